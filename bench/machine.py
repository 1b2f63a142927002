"""The machine: its description, its fp32 matrix-multiply rate and memory, and the command that starts vae-train."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shutil
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
