"""Where a training step's time goes: a TensorFlow profiler trace of some steps (viewable in
TensorBoard's Profile tab with ``tensorboard-plugin-profile``), summarized here per kind of op.

``make bench``'s profile section traces recipe C at batch 64 with the defaults, after warm-up, into a
dated folder under ``--profile-dir`` (bench/profiles by default).
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable
from pathlib import Path

from bench.loops import RECIPE_C
from bench.machine import log
from bench.runs import ROOT

# Op kinds of the CPU kernels (oneDNN "_Mkl" ops and Eigen ones), grouped by what they compute.
# A transposed convolution's forward pass is a "backprop-input" kernel and its input gradient a
# convolution, so convolutions are split by pass (the op's scope), not by kernel name.
CONVOLUTION = r"Conv2D"
OTHER_GROUPS = [
    ("dense layers (matmul), all passes", r"MatMul"),
    ("bias add and its gradient", r"^BiasAdd"),
    ("activations and their gradients", r"^(Relu|ReluGrad|Selu|SeluGrad|Elu|EluGrad|Sigmoid|SigmoidGrad|Tanh)"),
    ("precision casts", r"^Cast$"),
]
OPTIMIZER_SCOPES = ("rm_sprop", "adam", "sgd", "loss_scale")


def capture(logdir: Path, run: Callable[[], object]) -> Path:
    """Profile one call of ``run`` into ``logdir`` and return the ``.xplane.pb`` file written."""
    import tensorflow as tf

    logdir.mkdir(parents=True, exist_ok=True)
    before = set(logdir.rglob("*.xplane.pb"))
    tf.profiler.experimental.start(str(logdir))
    try:
        run()
    finally:
        tf.profiler.experimental.stop()
    written = sorted(set(logdir.rglob("*.xplane.pb")) - before)
    if not written:
        raise RuntimeError(f"the profiler wrote no trace under {logdir}")
    return written[-1]


def _group(kind: str, op_name: str) -> str:
    if any(op_name.startswith(scope) or f"/{scope}" in op_name for scope in OPTIMIZER_SCOPES):
        return "optimizer update"
    if re.search(CONVOLUTION, kind):
        if "BackpropFilter" in kind:
            return "convolutions: weight gradients"
        return "convolutions: input gradients" if "gradient_tape" in op_name else "convolutions: forward pass"
    for group, pattern in OTHER_GROUPS:
        if re.search(pattern, kind):
            return group
    return "loss, sampling and other element-wise ops"


def summarize(xplane: Path, steps: int) -> dict:
    """Per step: wall time of the compiled calls, busy time of TensorFlow's compute threads, and that
    busy time split by op group and by the costliest ops."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # TensorFlow's own copy of the schema

    space = xplane_pb2.XSpace()
    space.ParseFromString(xplane.read_bytes())
    host = next(plane for plane in space.planes if plane.name == "/host:CPU")
    names = {key: meta.name for key, meta in host.event_metadata.items()}
    wall = busy = 0
    groups: collections.Counter = collections.Counter()
    ops: collections.Counter = collections.Counter()
    threads = set()
    for line in host.lines:
        for event in line.events:
            name = names.get(event.metadata_id, "")
            if line.name == "python" and name == "KernelAndDeviceFunc::Run":
                wall += event.duration_ps
            if not line.name.startswith("tf_Compute") or "/" not in name:
                continue
            threads.add(line.name)
            op_name, _, kind = name.rpartition(":")
            op_name = op_name.split("StatefulPartitionedCall/")[-1]
            busy += event.duration_ps
            groups[_group(kind, op_name)] += event.duration_ps
            layer = re.sub(r"_\d+(?=/|$)", "", "/".join(op_name.split("/")[:3]))
            ops[f"{layer} ({kind})"] += event.duration_ps
    per_step_ms = 1e-9 / steps
    return {
        "steps": steps,
        "wall_ms_per_step": wall * per_step_ms,
        "busy_ms_per_step": busy * per_step_ms,
        "compute_threads": len(threads),
        "groups_ms_per_step": {group: ps * per_step_ms for group, ps in groups.most_common()},
        "top_ops_ms_per_step": {op: ps * per_step_ms for op, ps in ops.most_common(12)},
    }


def profile(bench) -> dict:
    """See the module's docstring; ``bench`` is the running :class:`bench.run.Bench`."""
    steps = 20 if bench.quick else 60
    loop = bench.loop(list(RECIPE_C))
    loop.warm_up()
    loop.steps(steps)
    logdir = bench.args.profile_dir / time.strftime("%Y%m%d-%H%M%S")
    log(f"profile: {steps} steps of recipe C at batch 64 into {logdir.relative_to(ROOT)}")
    trace = capture(logdir, lambda: loop.steps(steps))
    result = {"what": "recipe C, batch 64, defaults", "logdir": str(logdir.relative_to(ROOT)),
              **summarize(trace, steps)}
    log(f"  {result['wall_ms_per_step']:.1f} ms per step")
    return result
