"""The benchmark of a run as a user lives it: everything after the training step, against the step.

- ``evaluation``: in one process, on the default model, windows of training steps interleaved with
  the test figures (the whole test set) and with the IWAE bound (K = 50): their rates against the
  training loop's forward-pass rate (three forward passes per training step); and the bound against
  the one vae-train computed before (bench/iwae_before.py) on the same weights and noise, in
  float32 and in bfloat16.
- ``whole_runs``: recipe A and recipe C end to end, process start to exit, each against its
  reference script (bench/tutorial_cvae.py, bench/keras_vae_fit.py) on the same data and epochs, ours
  without the end-of-run figures the references do not compute;
  the default ``vae-train`` for two epochs; each run's time between epochs against its epochs'
  training time, its start-up time, and whether its console holds TensorFlow's C++ start-up lines.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.machine import log

ROOT = Path(__file__).resolve().parents[1]
IW_SAMPLES = 50
# Lines TensorFlow prints at start-up that a default run's console must not hold.
START_UP_LINES = ("absl::InitializeLog", "cuInit", "oneDNN custom operations", "cudart_stub")


def _once(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def evaluation(bench) -> dict:
    """See the module's docstring; ``bench`` is the running :class:`bench.run.Bench`."""
    import keras

    from bench.iwae_before import importance_weighted_nll_before
    from vae_train.evaluation.figures import Evaluator
    from vae_train.evaluation.likelihood import importance_weighted_nll
    from vae_train.models import build_model
    from vae_train.runtime.precision import ComputePrecision

    log("evaluation: the test figures and the IWAE bound against the training step")
    rounds = 2 if bench.quick else 5
    iw_images = 1024 if bench.quick else 2048
    loop = bench.loop(["data=mnist"])
    loop.warm_up()
    model, pipelines = loop.model, loop.parts.pipelines
    test = pipelines.test_batches()
    iw_test = test.take(iw_images)
    evaluator = Evaluator(model, loop.parts.strategy, seed=0)
    evaluator.evaluate(test)
    importance_weighted_nll(model, iw_test, IW_SAMPLES)  # traced
    steps = 100 if bench.quick else 300
    train_rates, evaluation_rates, iw_rates = [], [], []
    for _ in range(rounds):
        train_rates.append(steps * loop.batch_size / _once(lambda: loop.steps(steps)))
        evaluation_rates.append(pipelines.test_size / _once(lambda: evaluator.evaluate(test)))
        iw_rates.append(iw_images * IW_SAMPLES / _once(lambda: importance_weighted_nll(model, iw_test, IW_SAMPLES)))
    forward = [3 * rate for rate in train_rates]
    result = {
        "model": f"{loop.settings.model.name} on {loop.settings.data.name}, latent_dim {loop.settings.latent_dim}, "
                 f"precision {loop.policy}",
        "rounds": rounds, "train_median": statistics.median(train_rates),
        "evaluation_median": statistics.median(evaluation_rates),
        "evaluation_ratio": statistics.median(e / f for e, f in zip(evaluation_rates, forward, strict=True)),
        "iw_median": statistics.median(iw_rates),
        "iw_ratio": statistics.median(i / f for i, f in zip(iw_rates, forward, strict=True)),
        "iw_images": iw_images, "iw_samples": IW_SAMPLES,
    }
    # The same weights and noise: today's bound (batches of 64, as before, in float32 and in bfloat16)
    # against the one computed before, in float32.
    batches = pipelines.in_order("test", 64).take(iw_images // 64)
    before_seconds = _once(lambda: result.update(before=importance_weighted_nll_before(model, batches, IW_SAMPLES)))
    result["before_seconds"] = before_seconds
    result["after_seconds"] = _once(lambda: result.update(after=importance_weighted_nll(model, batches, IW_SAMPLES)))
    bfloat16 = build_model(loop.settings.model, loop.settings.latent_dim, loop.parts.dataset.image_shape,
                           loop.settings.seed, ComputePrecision("mixed_bfloat16"))
    bfloat16.set_weights(model.get_weights())
    result["after_bfloat16"] = importance_weighted_nll(bfloat16, batches, IW_SAMPLES)
    keras.config.set_dtype_policy("float32")
    result["difference"] = result["after"] - result["before"]
    result["difference_bfloat16"] = result["after_bfloat16"] - result["before"]
    result["speedup_over_before"] = before_seconds / result["after_seconds"]
    log(f"  train {result['train_median']:.0f} images/s; test figures {result['evaluation_median']:.0f} "
              f"images/s = {result['evaluation_ratio']:.2f}x the forward rate; IWAE {result['iw_median']:.0f} "
              f"decodes/s = {result['iw_ratio']:.2f}x; bound {result['after']:.3f} vs {result['before']:.3f} before "
              f"(bf16 {result['after_bfloat16']:.3f}), {result['speedup_over_before']:.1f}x faster")
    return result


def timed_command(command: list[str], cwd: Path) -> dict:
    """Run ``command`` to its end: its wall time from process start to exit and its console output."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=7200)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-3000:]}")
    return {"wall_seconds": wall, "stderr": done.stderr, "stdout": done.stdout}


def _ours(bench, name: str, overrides: list[str], dataset: str) -> dict:
    run_dir = bench.workdir / f"whole_{name}"
    from bench import machine

    command = [*machine._vae_train_command(), *overrides, f"data.root={bench.data / dataset}",
               "trainer.progress_bar=false", f"hydra.run.dir={run_dir}"]
    done = timed_command(command, bench.workdir)
    results = json.loads((run_dir / "results.json").read_text())
    console = done["stderr"] + done["stdout"]
    return {
        "command": "vae-train " + " ".join(overrides), "wall_seconds": done["wall_seconds"],
        "epoch_seconds": results["epoch_seconds"], "between_epochs_seconds": results["between_epochs_seconds"],
        "overhead": results["between_epochs_seconds"] / results["epoch_seconds"],
        "startup_seconds": results["startup_seconds"], "results": {
            key: results.get(key) for key in ("test_loss", "test_elbo", "test_nll_iw", "representation_seconds")},
        "console_start_up_lines": sum(any(mark in line for mark in START_UP_LINES) for line in console.splitlines()),
    }


def _reference(bench, script: str, dataset: str, epochs: int) -> dict:
    output = bench.workdir / f"reference_{Path(script).stem}"
    done = timed_command([sys.executable, str(ROOT / "bench" / script), "--data", str(bench.data / dataset),
                          "--epochs", str(epochs), "--output", str(output)], bench.workdir)
    return {"command": f"python bench/{script} --epochs {epochs}", "wall_seconds": done["wall_seconds"],
            "results": json.loads((output / "results.json").read_text())}


def whole_runs(bench) -> dict:
    """See the module's docstring; ``bench`` is the running :class:`bench.run.Bench`."""
    epochs = 1 if bench.quick else 10
    result = {"epochs": epochs}
    # The reference scripts compute neither the end-of-run IWAE bound nor the codes' figures: for the
    # same work, ours skips them too (its per-epoch figures, pictures, projector and checkpoints stay).
    same_work = ["evaluation.iw_samples=0", "evaluation.representation=false"]
    recipes = {
        "recipe_a": (["experiment=tf_cvae_tutorial", f"trainer.epochs={epochs}", *same_work], "mnist",
                     "tutorial_cvae.py"),
        "recipe_c": (["experiment=keras_vae_fashion", f"trainer.epochs={epochs}", *same_work], "fashion",
                     "keras_vae_fit.py"),
    }
    for name, (overrides, dataset, script) in recipes.items():
        log(f"whole run, {name}: vae-train and bench/{script}, {epochs} epochs each")
        ours = _ours(bench, name, overrides, dataset)
        reference = _reference(bench, script, dataset, epochs)
        result[name] = {"ours": ours, "reference": reference,
                        "ratio": reference["wall_seconds"] / ours["wall_seconds"]}
        log(f"  ours {ours['wall_seconds']:.0f} s, reference {reference['wall_seconds']:.0f} s: "
                  f"{result[name]['ratio']:.2f}x; ours between epochs {100 * ours['overhead']:.0f}% of an epoch")
    log("whole run, the default vae-train: 2 epochs")
    result["default"] = _ours(bench, "default", ["trainer.epochs=2"], "mnist")
    log(f"  between epochs {100 * result['default']['overhead']:.0f}% of an epoch; start-up "
              f"{result['default']['startup_seconds']:.1f} s; {result['default']['console_start_up_lines']} "
              "TensorFlow start-up lines on the console")
    result["tensorflow_start_seconds"] = _tensorflow_start_seconds()
    return result


def _tensorflow_start_seconds() -> float:
    """How long importing TensorFlow and finding its devices takes, in a fresh process: the share of the
    start-up that is TensorFlow's own."""
    code = ("import time; start = time.perf_counter(); from vae_train.runtime.start import start_tensorflow; "
            "start_tensorflow(); print(time.perf_counter() - start)")
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                  timeout=300).stdout.strip().splitlines()[-1]) for _ in range(3)]
    return statistics.median(times)
