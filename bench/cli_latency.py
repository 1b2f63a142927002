"""``make bench``'s cli section: the command line's latency, ``vae-train --help`` and ``vae-train --cfg
job`` (median wall time of a few runs each), and whether composing a config imports TensorFlow (it
must not). It runs first, before the benchmark's own process imports TensorFlow."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.machine import _vae_train_command, log


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


def cli_latency(bench) -> dict:
    """See the module's docstring; ``bench`` is the running :class:`bench.run.Bench`."""
    log("command-line latency")
    result = cli_times(repeats=3 if bench.quick else 5)
    log(f"  --help {result['help']['median_s']:.2f} s, --cfg job {result['cfg_job']['median_s']:.2f} s")
    return result
