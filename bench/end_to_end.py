"""``make bench``'s end_to_end section: the real ``vae-train`` command on recipe C, two short epochs.

Its last epoch's images/s (from its results.json), its wall time and its peak resident memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from bench import machine
from bench.machine import log

# Runs its arguments as a command, passes its exit code on and prints its peak resident memory (KiB).
PEAK_RSS_HELPER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def end_to_end(bench) -> dict:
    """See the module's docstring; ``bench`` is the running :class:`bench.run.Bench`."""
    run_dir = bench.workdir / "end_to_end"
    examples = 6_400 if bench.quick else 19_200
    overrides = ["experiment=keras_vae_fashion", f"data.root={bench.data / 'fashion'}", "trainer.epochs=2",
                 f"data.max_train_examples={examples}", "data.max_test_examples=2000",
                 "trainer.progress_bar=false", f"hydra.run.dir={run_dir}"]
    command = [*machine._vae_train_command(), *overrides]
    log("end to end: " + " ".join(Path(command[0]).name if i == 0 else c for i, c in enumerate(command)))
    start = time.perf_counter()
    # Through a small helper: a child forked from this (large) process would count this process's
    # memory in its own peak, which Linux carries across exec.
    done = subprocess.run([sys.executable, "-c", PEAK_RSS_HELPER, *command], capture_output=True, text=True,
                          timeout=900)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"vae-train failed: {done.stderr[-3000:]}")
    peak_rss_kb = int(done.stdout.strip().splitlines()[-1])
    results = json.loads((run_dir / "results.json").read_text())
    shown = [o for o in overrides if not o.startswith(("hydra.run.dir", "data.root"))]
    log(f"  last epoch {results['images_per_second']:.0f} images/s, {wall:.1f} s, "
        f"peak RSS {peak_rss_kb / 1024:.0f} MB")
    return {
        "command": "vae-train " + " ".join(shown), "images_per_second": results["images_per_second"],
        "wall_seconds": wall, "peak_rss_mb": peak_rss_kb / 1024, "train_images_per_epoch": examples,
    }
