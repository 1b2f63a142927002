"""``make bench``'s threads section: TensorFlow's thread pools (intra-op / inter-op) on recipe C's loop.

Thread pools are fixed when TensorFlow starts, so each setting runs in its own process,
``bench/run.py --thread-worker INTRA INTER`` (:func:`thread_worker`, 0 for TensorFlow's default):
TensorFlow's default, then each other setting, then the default again; each setting is compared with
the mean of the two default runs around it.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench.loops import RECIPE_C
from bench.machine import log

RUN_SCRIPT = Path(__file__).with_name("run.py")


def threads(bench) -> dict:
    """See the module's docstring; ``bench`` is the running :class:`bench.run.Bench`."""
    others = [(2, 1), (1, 2)]
    order = [(0, 0), *others, (0, 0)]
    log(f"threads: {len(order)} processes, one per setting")
    rates: dict = {}
    for intra, inter in order:
        command = [sys.executable, str(RUN_SCRIPT), "--data", str(bench.data),
                   "--thread-worker", str(intra), str(inter)] + (["--quick"] if bench.quick else [])
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"thread worker failed: {done.stderr[-3000:]}")
        rates.setdefault((intra, inter), []).append(json.loads(done.stdout.strip().splitlines()[-1])["median"])
    default = statistics.mean(rates[(0, 0)])
    result = {"variants": [
        {"setting": "TensorFlow's default (one per core, both pools)" if s == (0, 0) else f"{s[0]} / {s[1]}",
         "intra": s[0], "inter": s[1], "median": statistics.mean(r), "rates": r,
         "ratio": statistics.mean(r) / default} for s, r in rates.items()]}
    for variant in result["variants"]:
        log(f"  {variant['setting']:45s} {variant['median']:7.0f} images/s {variant['ratio']:.2f}x")
    return result


def thread_worker(bench, intra: int, inter: int) -> None:
    """One setting's process: recipe C's loop timed in rounds, its rates printed as the last line (JSON)."""
    import tensorflow as tf

    if intra:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    from bench.timing import run_rounds

    loop = bench.loop(list(RECIPE_C))
    loop.warm_up()
    contender = bench.loop_contender("ours", loop, 1_600 if bench.quick else 4_800)
    run_rounds([contender], 2 if bench.quick else 5)
    print(json.dumps({"median": contender.median, "rates": contender.rates}))
