"""``make bench``'s start-up section: where a 1-epoch run of recipe A spends its wall time.

``vae-train experiment=tf_cvae_tutorial trainer.epochs=1 evaluation.iw_samples=0`` (the codes' figures
on), process start to exit, twice, against the tutorial's own loop (bench/tutorial_cvae.py) for the same
epoch between them. Each run's parts come from its results.json (``wall_parts``, the account of
run/wall_time.py) and the process's exit from the wall time outside it. The first compiled call holds
the tracing and that call's steps; the tracing is that call less its steps at the rate of the later
calls. Targets: the parts outside the training steps at most 8 s, the first step at most 5 s after the
process started.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from bench import markdown
from bench.machine import _vae_train_command, log
from bench.runs import ROOT, timed_command

OVERRIDES = ["experiment=tf_cvae_tutorial", "trainer.epochs=1", "evaluation.iw_samples=0", "trainer.progress_bar=false"]
OUTSIDE_TARGET = 8.0
FIRST_STEP_TARGET = 5.0
# The rows of the table, in the order a run meets them: (part, what it holds).
ROWS = (
    ("interpreter_and_hydra", "interpreter, imports, Hydra's composition"),
    ("tensorflow_import", "importing TensorFlow and Keras"),
    ("devices", "devices and strategy"),
    ("data", "reading the data"),
    ("model", "building the model and optimizer"),
    ("evaluation_set_up", "test figures, pictures and trainer set up"),
    ("restore", "looking for a checkpoint, the run's record"),
    ("other_start_up", "the rest of start-up"),
    ("tracing", "tracing the training step (the first call less its steps)"),
    ("training_steps", "the training steps"),
    ("test_figures", "test figures (tracing included)"),
    ("checkpoints", "checkpoints"),
    ("epoch_pictures", "pictures and projector"),
    ("other_between", "the rest between epochs (the epoch's pipeline, logs)"),
    ("end_of_run_figures", "the codes' figures (and anomalies, bounds when on)"),
    ("export", "the exported models"),
    ("other_end", "the rest of the end (results.json, TensorBoard)"),
    ("exit", "the closing line and the interpreter's exit"),
)


def split(results: dict, process_seconds: float, first_call_steps: int) -> dict[str, float]:
    """A run's wall time in the parts of ROWS, which add up to ``process_seconds``."""
    parts = results["wall_parts"]
    part = lambda name: parts.get(name, 0.0)  # noqa: E731
    startup = [name for name, _ in ROWS[:7]]
    between = ("test_figures", "checkpoints", "epoch_pictures")
    steps, first_call = results["wall_training_steps_seconds"], part("first_call_of_the_steps")
    later_steps = results["steps"] - first_call_steps
    per_step = (steps - first_call) / later_steps if later_steps > 0 else 0.0
    tracing = max(0.0, first_call - first_call_steps * per_step)
    shares = {name: part(name) for name in startup}
    shares["other_start_up"] = results["wall_startup_seconds"] - sum(shares.values())
    shares |= {"tracing": tracing, "training_steps": steps - tracing}
    shares |= {name: part(name) for name in between}
    shares["other_between"] = results["wall_between_epochs_seconds"] - sum(part(name) for name in between)
    shares |= {"end_of_run_figures": part("end_of_run_figures"), "export": part("export")}
    shares["other_end"] = results["wall_end_of_run_seconds"] - part("end_of_run_figures") - part("export")
    shares["exit"] = process_seconds - results["wall_seconds"]
    return shares


def _first_call_steps(run_dir: Path, steps_per_epoch: int) -> int:
    """The steps of the first compiled call: up to the first log point, as the loop stops there."""
    from omegaconf import OmegaConf

    trainer = OmegaConf.load(run_dir / ".hydra" / "config.yaml").trainer
    return min(trainer.steps_per_execution, trainer.log_every_steps, steps_per_epoch)


def _ours(bench, attempt: int) -> dict:
    run_dir = bench.workdir / f"startup_{attempt}"
    command = [*_vae_train_command(), *OVERRIDES, f"data.root={bench.data / 'mnist'}", f"hydra.run.dir={run_dir}"]
    done = timed_command(command, bench.workdir)
    results = json.loads((run_dir / "results.json").read_text())
    shares = split(results, done["wall_seconds"], _first_call_steps(run_dir, results["steps"]))
    outside = done["wall_seconds"] - shares["training_steps"]
    return {"wall_seconds": done["wall_seconds"], "parts": shares, "outside_steps_seconds": outside,
            "first_step_seconds": results["startup_seconds"], "test_elbo": results.get("test_elbo")}


def startup(bench) -> dict:
    """See the module's docstring; ``bench`` is the running :class:`bench.run.Bench`."""
    log("start-up: a 1-epoch run of recipe A in parts, twice, and the tutorial's loop for the epoch")
    first = _ours(bench, 1)
    reference = timed_command([sys.executable, str(ROOT / "bench" / "tutorial_cvae.py"), "--data",
                               str(bench.data / "mnist"), "--epochs", "1", "--output",
                               str(bench.workdir / "startup_reference")], bench.workdir)
    second = _ours(bench, 2)
    runs = [first, second]
    result = {
        "command": "vae-train " + " ".join(OVERRIDES), "runs": runs,
        "parts": {name: statistics.mean(run["parts"][name] for run in runs) for name, _ in ROWS},
        "wall_seconds": statistics.mean(run["wall_seconds"] for run in runs),
        "outside_steps_seconds": statistics.mean(run["outside_steps_seconds"] for run in runs),
        "first_step_seconds": statistics.mean(run["first_step_seconds"] for run in runs),
        "reference_wall_seconds": reference["wall_seconds"],
    }
    result["ratio"] = result["wall_seconds"] / result["reference_wall_seconds"]
    log(f"  {result['wall_seconds']:.1f} s ({result['outside_steps_seconds']:.1f} s outside the training steps; "
        f"first step after {result['first_step_seconds']:.1f} s); the tutorial's loop "
        f"{result['reference_wall_seconds']:.1f} s: {result['ratio']:.2f}x")
    return result


def table(result: dict | None) -> list[str]:
    """The section's lines for docs/benchmarks.md."""
    if not result:
        return []
    lines = ["### Start-up and the end of a run: a 1-epoch run of recipe A in parts", "",
             f"`{result['command']}`, process start to exit, the mean of two runs (around one of the tutorial's "
             "loop). The parts add up to the wall time.", ""]
    rows = [[name.replace("_", " "), what, f"{result['parts'][name]:.2f} s"] for name, what in ROWS]
    lines += markdown.table(["part", "what", "seconds"], rows)
    outside = markdown.met(result["outside_steps_seconds"], OUTSIDE_TARGET, above=False)
    first_step = markdown.met(result["first_step_seconds"], FIRST_STEP_TARGET, above=False)
    lines += [f"Wall time {result['wall_seconds']:.1f} s; outside the training steps "
              f"**{result['outside_steps_seconds']:.1f} s** (target ≤ {OUTSIDE_TARGET:.0f} s: {outside}); the first "
              f"step **{result['first_step_seconds']:.1f} s** after the process started (target ≤ "
              f"{FIRST_STEP_TARGET:.0f} s: {first_step}). The tutorial's "
              f"own loop for the same epoch: {result['reference_wall_seconds']:.1f} s, so ours takes "
              f"{result['ratio']:.2f}× its time.", ""]
    return lines
