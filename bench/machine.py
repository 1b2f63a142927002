"""The machine: its description, its fp32 matrix-multiply rate, memory and command-line latency."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from vae_train.runtime.host_cpu import cpu_flags, cpu_model


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


MATMUL_SIZE = 2048


def describe() -> dict:
    import keras
    import tensorflow as tf

    flags = cpu_flags()
    vector = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16") if f in flags]
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_features": vector,
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "platform": platform.platform(),
    }


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def matmul_window(dtype: str = "float32", size: int = MATMUL_SIZE, seconds: float = 0.5):
    """A window of products of two size x size matrices lasting about ``seconds`` (calibrated after
    a warm-up); returns (FLOPs per window, window)."""
    import tensorflow as tf

    a = tf.cast(tf.random.stateless_normal((size, size), seed=(1, 2)), dtype)
    b = tf.cast(tf.random.stateless_normal((size, size), seed=(3, 4)), dtype)
    product = tf.function(tf.matmul)

    def run(calls: int) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            result = product(a, b)
        result.numpy()
        return time.perf_counter() - start

    run(2)  # warm-up: tracing, thread pools, page faults
    calls = max(2, round(seconds / min(run(1), run(1))))
    return calls * 2 * size**3, lambda: run(calls)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _vae_train_command() -> list[str]:
    script = Path(sys.executable).with_name("vae-train")
    if script.exists():
        return [str(script)]
    found = shutil.which("vae-train")
    return [found] if found else [sys.executable, "-m", "vae_train.launch.train_cli"]


def cli_times(repeats: int = 5) -> dict:
    """Median wall time of ``vae-train --help`` and ``vae-train --cfg job``, and whether composing a
    config imports TensorFlow (it must not)."""
    command = _vae_train_command()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    results: dict = {"command": " ".join(Path(part).name for part in command)}
    for label, arguments in (("help", ["--help"]), ("cfg_job", ["--cfg", "job"])):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            done = subprocess.run([*command, *arguments], capture_output=True, text=True, env=env, timeout=120)
            times.append(time.perf_counter() - start)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command + arguments)} failed: {done.stderr[-2000:]}")
        results[label] = {"median_s": statistics.median(times), "times_s": times}
    probe = subprocess.run([sys.executable, "-X", "importtime", "-m", "vae_train.launch.train_cli", "--cfg", "job"],
                           capture_output=True, text=True, env=env, timeout=120)
    results["cfg_job_imports_tensorflow"] = any(
        line.rstrip().endswith("| tensorflow") for line in probe.stderr.splitlines())
    return results
