"""``make bench``: vae-train's training loop against the reference implementation, on real data.

In one process, on the same data: the reference (recipe C's VAE in Keras ``Model.fit`` with a custom
``train_step``) and vae-train's loop on the identical model, batch and optimizer, timed in
interleaved windows; the machine's fp32 matmul rate and the model's FLOPs per image; whether both
reach the same loss; each speed lever against the defaults; thread pools (one process each); a
batch-size x model sweep with the input pipeline alone; a profile of where a step's time goes;
``vae-train`` end to end; the command line's latency. Writes ``docs/benchmarks.json`` and the
tables in ``docs/benchmarks.md``.

    python bench/run.py [--data ../shared/datasets] [--quick] [--sections headline,levers,...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `bench.*` when run as a script
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench import machine  # noqa: E402  (no TensorFlow yet: the CLI is timed first)
from bench.machine import log  # noqa: E402

SECTIONS = ("cli", "headline", "same_results", "levers", "layout", "threads", "sweep", "profile", "end_to_end",
            "evaluation", "colour", "whole_runs", "startup")
BATCH_SIZES = (32, 64, 128, 256)
MODELS = ("dense_ae", "conv_ae", "cvae")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = os.environ.get("VAE_TRAIN_DATA") or str(ROOT.parent / "shared" / "datasets")
    parser.add_argument("--data", type=Path, default=Path(default_data),
                        help="folder holding fashion/ and mnist/ IDX files (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="short windows and few rounds: a smoke test")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help="comma-separated subset of: " + ", ".join(SECTIONS))
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "benchmarks.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the results, write no file")
    parser.add_argument("--profile-dir", type=Path, default=ROOT / "bench" / "profiles")
    parser.add_argument("--thread-worker", nargs=2, type=int, metavar=("INTRA", "INTER"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.quick = args.quick
        self.data = args.data.resolve()
        self.workdir = Path(tempfile.mkdtemp(prefix="vae-train-bench-"))
        self.results: dict = {"command": "python bench/run.py" + (" --quick" if args.quick else ""),
                              "load_start": machine.load_average(), "peak_rss_mb": {}}
        self._dataset_cache: dict = {}
        self._kept: list = []

    # ---- helpers --------------------------------------------------------------------------------

    def settings(self, overrides: list[str]):
        from bench.loops import settings_for

        dataset = "mnist" if "data=mnist" in overrides else "fashion"
        return settings_for(self.data, dataset, overrides)

    def dataset(self, settings):
        from vae_train.data.pipeline import load_dataset

        data = settings.data
        key = (data.name, str(getattr(data, "split", "")), data.max_train_examples, data.max_test_examples)
        if key not in self._dataset_cache:
            self._dataset_cache[key] = load_dataset(settings.data)
        return self._dataset_cache[key]

    def loop(self, overrides: list[str]):
        from bench.loops import LoopUnderTest

        settings = self.settings(overrides)
        return self.keep(LoopUnderTest(settings, self.dataset(settings), self.workdir / f"run{len(self._kept)}"))

    def keep(self, thing):
        """Loops stay alive until the process ends: tearing down a repeating input iterator waits for
        its background thread, often busy refilling the whole-dataset shuffle buffer, tens of seconds
        under load; :func:`main` ends the process without that teardown once the results are written."""
        self._kept.append(thing)
        return thing

    def loop_contender(self, name: str, loop, images: int):
        from bench.timing import Contender, timed

        steps = max(1, round(images / loop.batch_size))
        return Contender(name, steps * loop.batch_size, timed(lambda: loop.steps(steps)))

    def matmul_contender(self, dtype: str = "float32"):
        from bench.timing import Contender

        flops, window = machine.matmul_window(dtype, seconds=0.3 if self.quick else 0.6)
        return Contender(f"matmul {dtype}", flops / 1e9, window)

    def pipeline_contender(self, loop, images: int):
        """The Trainer's own input iterator, drained inside a compiled loop (no model)."""
        import tensorflow as tf

        from bench.timing import Contender, timed

        iterator = loop.trainer.epoch_iterator(loop.parts.pipelines.train(1).repeat())
        steps = max(1, round(images / loop.batch_size))

        @tf.function
        def drain(iterator, count):
            total = tf.constant(0.0)
            for _ in tf.range(count):
                batch = next(iterator)
                total += batch[0, 0, 0, 0]
            return total

        count = tf.constant(steps)
        drain(iterator, count).numpy()  # trace, fill the shuffle buffer
        return Contender("pipeline", steps * loop.batch_size, timed(lambda: drain(iterator, count).numpy()))

    def note_rss(self, phase: str) -> None:
        self.results["peak_rss_mb"][phase] = machine.peak_rss_mb()

    @staticmethod
    def levers_of(loop) -> str:
        t = loop.settings.trainer
        return (f"precision {loop.policy}, steps_per_execution {t.steps_per_execution}, "
                f"jit_compile {str(t.jit_compile).lower()}")

    # ---- sections -------------------------------------------------------------------------------

    def cli(self) -> None:
        log("command-line latency")
        self.results["cli"] = machine.cli_times(repeats=3 if self.quick else 5)
        log(f"  --help {self.results['cli']['help']['median_s']:.2f} s, --cfg job "
            f"{self.results['cli']['cfg_job']['median_s']:.2f} s")

    def headline(self) -> None:
        """The reference's Model.fit drives the rounds: after each of its windows, a callback runs
        one window of ours and one of the matmul, so all three share the machine's state."""
        from bench import flops
        from bench.reference import as_float_images, build_reference
        from bench.timing import FitWindows, paired_ratio, run_round, spread

        steps = 30 if self.quick else 100
        rounds = 3 if self.quick else 9
        log(f"reference vs ours: {rounds} rounds of {steps} steps at batch 64")
        ours = self.loop(self.recipe_c())
        ours.warm_up()
        batch = ours.batch_size
        images = as_float_images(self.dataset(ours.settings).train.images)
        reference = build_reference(ours.settings.latent_dim, seed=ours.settings.seed)
        ours_contender = self.loop_contender("ours", ours, steps * batch)
        matmul = self.matmul_contender()
        matmul_bf16 = self.matmul_contender("bfloat16")
        others = [ours_contender, matmul, matmul_bf16]
        windows = FitWindows(warmup=20, steps=steps, rounds=rounds, between=lambda r: run_round(others, r))
        if windows.total_steps * batch > len(images):
            raise RuntimeError("not enough images for the reference's windows")
        reference.fit(images, batch_size=batch, epochs=1, steps_per_epoch=windows.total_steps, shuffle=True,
                      verbose=0, callbacks=[windows])
        reference_rates = [steps * batch / seconds for seconds in windows.seconds]
        flops_per_image = flops.training_flops_per_image(ours.model.encoder, ours.model.decoder)
        matmul_rates = [rate * 1e9 for rate in matmul.rates]

        def summary(rates):
            return {"median": statistics.median(rates), "rates": rates, "spread": spread(rates),
                    "gflops": statistics.median(rates) * flops_per_image / 1e9,
                    "peak_fraction": statistics.median(
                        r * flops_per_image / m for r, m in zip(rates, matmul_rates, strict=True))}

        ratios = [a / b for a, b in zip(ours_contender.rates, reference_rates, strict=True)]
        self.results["headline"] = {
            "rounds": rounds, "steps_per_window": steps, "batch_size": batch,
            "reference": summary(reference_rates),
            "ours": {**summary(ours_contender.rates), "levers": self.levers_of(ours)},
            "ratio": paired_ratio(ours_contender.rates, reference_rates),
            "ratio_min": min(ratios), "ratio_max": max(ratios),
            "flops_per_image": flops_per_image,
            "layers": [vars(layer) for layer in flops.model_work(ours.model.encoder, ours.model.decoder)],
            "matmul_gflops": statistics.median(matmul.rates), "matmul_size": machine.MATMUL_SIZE,
            "matmul_bf16_gflops": statistics.median(matmul_bf16.rates),
            "ours_bf16_peak_fraction": statistics.median(
                r * flops_per_image / (m * 1e9) for r, m in zip(ours_contender.rates, matmul_bf16.rates, strict=True)),
        }
        head = self.results["headline"]
        log(f"  reference {head['reference']['median']:.0f} images/s, ours {head['ours']['median']:.0f} images/s, "
            f"ratio {head['ratio']:.2f}x; ours at {100 * head['ours']['peak_fraction']:.0f}% of "
            f"{head['matmul_gflops']:.0f} GFLOP/s")
        self.pipeline_alone(ours)
        self.keep(reference)
        self.note_rss("headline")

    def pipeline_alone(self, ours) -> None:
        from bench.timing import run_rounds

        pipeline = self.pipeline_contender(ours, 64_000 if not self.quick else 6_400)
        training = self.loop_contender("ours", ours, 3_200)
        run_rounds([training, pipeline], 2 if self.quick else 4)
        from bench.timing import paired_ratio

        self.results["pipeline"] = {"median": pipeline.median, "training_median": training.median,
                                    "ratio": paired_ratio(pipeline.rates, training.rates)}
        log(f"  pipeline alone {pipeline.median:.0f} images/s = {self.results['pipeline']['ratio']:.0f}x training")

    def recipe_c(self) -> list[str]:
        return ["experiment=keras_vae_fashion"]

    def same_results(self) -> None:
        """Reference and ours trained N steps from the same initial weights on the same batches, then
        evaluated by the same code; ours is repeated with other noise seeds to measure the noise."""
        import keras
        import numpy as np
        import tensorflow as tf

        from bench.reference import build_reference, copy_weights, parts
        from vae_train.models import build_model

        steps = 60 if self.quick else 500
        last = min(100, steps // 2)
        seeds = (0, 1, 2)
        configurations = [(seed, []) for seed in seeds]
        default_policy = self.settings(self.recipe_c())
        if self.levers_precision(default_policy) != "float32":
            configurations.append((0, ["trainer.precision=float32"]))  # the precision lever itself
        log(f"same results: {steps} steps, the reference and {len(configurations)} runs of ours")
        runs = []
        batches = initial = None
        for noise_seed, overrides in configurations:
            ours = self.loop([*self.recipe_c(), *overrides])
            if initial is None:
                initial = (ours.model.encoder.get_weights(), ours.model.decoder.get_weights())
                take = ours.parts.pipelines.train(0).take(steps)
                batches = np.concatenate([b.numpy() for b in take])
            if noise_seed:
                ours.model.noise.reset_from_seed(10_000 + noise_seed)
            ours.steps(steps - last)
            sums = ours.steps(last)
            runs.append({"noise_seed": noise_seed, "precision": ours.policy, "lever": bool(overrides),
                         "train_loss_last": float(sums[0] / sums[-1]),
                         "weights": (ours.model.encoder.get_weights(), ours.model.decoder.get_weights())})
            settings = ours.settings
        # The reference and the evaluating model compute in float32, whatever ours did.
        keras.mixed_precision.set_dtype_policy("float32")
        reference = build_reference(settings.latent_dim, seed=settings.seed)
        # Built for its layers only; the reference gets vae-train's initial weights.
        donor = build_model(settings.model, settings.latent_dim, ours.parts.dataset.image_shape, settings.seed)
        donor.encoder.set_weights(initial[0])
        donor.decoder.set_weights(initial[1])
        copy_weights((donor.encoder, donor.decoder), parts(reference))
        history = _LossRecorder()
        reference.fit(batches, batch_size=settings.data.batch_size, shuffle=False, epochs=1, verbose=0,
                      callbacks=[history])
        reference_last = history.mean_of_last(last, settings.latent_dim)

        # One evaluation for all: fp32 weights copied into one model, fixed noise, the same images.
        evaluator = build_model(settings.model, settings.latent_dim, ours.parts.dataset.image_shape, settings.seed)
        eval_images = tf.constant(_test_images(self.dataset(settings), 5000))

        def evaluate(encoder_weights, decoder_weights) -> dict:
            evaluator.encoder.set_weights(encoder_weights)
            evaluator.decoder.set_weights(decoder_weights)
            noise = tf.random.Generator.from_seed(7)
            terms = evaluator.loss_terms(eval_images, training=False, noise=noise)
            reconstruction = float(tf.reduce_mean(terms["reconstruction"]))
            kl = float(tf.reduce_mean(terms["kl"]))
            return {"eval_loss": reconstruction + kl, "eval_objective": reconstruction + kl / settings.latent_dim}

        copy_weights(parts(reference), (evaluator.encoder, evaluator.decoder))
        reference_result = {**evaluate(evaluator.encoder.get_weights(), evaluator.decoder.get_weights()),
                            "train_loss_last": reference_last}
        ours_results = [{key: value for key, value in run.items() if key != "weights"} | evaluate(*run["weights"])
                        for run in runs]
        ours_losses = [run["eval_loss"] for run in ours_results if not run["lever"]]
        noise = statistics.stdev(ours_losses)
        difference = reference_result["eval_loss"] - statistics.mean(ours_losses)
        # Three noise-only repeats give a rough spread; the tolerance is 3 of them, at least 1% of the loss.
        tolerance = max(3 * noise, 0.01 * abs(reference_result["eval_loss"]))
        self.results["same_results"] = {
            "steps": steps, "last": last, "eval_images": int(eval_images.shape[0]),
            "reference": reference_result, "ours": ours_results, "difference": difference,
            "noise": noise, "tolerance": tolerance, "within_noise": abs(difference) <= tolerance,
        }
        log(f"  reference {reference_result['eval_loss']:.2f}, ours {[round(x, 2) for x in ours_losses]} "
            f"(difference {difference:+.2f}, tolerance {tolerance:.2f})")

    def levers(self) -> None:
        """Each lever flipped away from the defaults, interleaved with the defaults in one process."""
        from bench.timing import paired_ratio, run_rounds

        rounds = 2 if self.quick else 5
        images = 1_600 if self.quick else 4_800
        variants = [Variant("defaults", ""), *self.lever_variants()]
        log(f"levers: {len(variants) - 1} variants x {rounds} rounds")
        contenders, loops = [], []
        for variant in variants:
            loop = self.loop([*self.recipe_c(), *variant.overrides])
            if variant.patch:
                variant.patch(loop)
            loop.warm_up(1 if variant.slow else 10)
            loops.append(loop)
            contenders.append(self.loop_contender(variant.name, loop, max(loop.batch_size, images * variant.scale)))
        run_rounds([c for c, v in zip(contenders, variants, strict=True) if not v.slow], rounds)
        for contender, variant in zip(contenders, variants, strict=True):
            if variant.slow:  # one short window, against the defaults' median
                contender.run_window()
                contender.rates *= rounds
        self.results["levers"] = {"rounds": rounds, "images_per_window": images, "variants": [
            {"name": v.name, "setting": v.setting or self.levers_of(loop), "note": v.note, "median": c.median,
             "rates": c.rates, "ratio": paired_ratio(c.rates, contenders[0].rates)}
            for v, c, loop in zip(variants, contenders, loops, strict=True)]}
        for variant in self.results["levers"]["variants"]:
            log(f"  {variant['name']:28s} {variant['setting'][:60]:60s} {variant['median']:7.0f} images/s "
                f"{variant['ratio']:.2f}x")

    @staticmethod
    def levers_precision(settings) -> str:
        import tensorflow as tf

        from vae_train.runtime.precision import resolve_precision

        return resolve_precision(settings.trainer.precision, gpus=len(tf.config.list_physical_devices("GPU"))).policy

    def lever_variants(self) -> list[Variant]:
        """Each differs from the defaults in one lever."""
        from vae_train.runtime.precision import POLICIES

        settings = self.settings(self.recipe_c())
        t = settings.trainer
        variants = [Variant("steps per tf.function call", f"trainer.steps_per_execution={spe}",
                            [f"trainer.steps_per_execution={spe}"]) for spe in (1, 10) if spe != t.steps_per_execution]
        xla = str(not t.jit_compile).lower()
        variants.append(Variant("XLA", f"trainer.jit_compile={xla}", [f"trainer.jit_compile={xla}"],
                                "XLA's CPU convolutions are Eigen's, not oneDNN's", scale=0.5))
        current = self.levers_precision(settings)
        for policy in POLICIES:
            if policy != current:
                slow = policy == "mixed_float16"
                variants.append(Variant(
                    "precision", f"trainer.precision={policy}", [f"trainer.precision={policy}"],
                    "no float16 matrix unit on this CPU: slow fallback kernels (one 1-step window)" if slow else "",
                    scale=0.0 if slow else 1.0, slow=slow))
        variants.append(Variant("loss on probabilities", "sigmoid, then cross-entropy of probabilities", [],
                                "what the reference computes (bench-only variant)", _unfused_loss))
        variants.append(Variant("input pipeline", "data.gather_batches=false", ["data.gather_batches=false"],
                                "tf.data shuffles and batches the images themselves"))
        variants.append(Variant("input pipeline", "one constant batch, no pipeline", [],
                                "the pipeline's whole cost, an upper bound (bench-only variant)", _constant_input))
        variants.append(Variant("dataset distribution", "the strategy's distributed iterator, not the dataset's own",
                                [], "what multi-device and GPU runs read; no use on one CPU (bench-only variant)",
                                _distributed_iterator))
        default_layers = ["model.hidden_units=[128]", "model.decoder_hidden_units=[256]", "model.activation=swish"]
        variants.append(Variant("architecture", " ".join(default_layers), default_layers,
                                "the default cvae's layers (the search of docs/results.md) for recipe C's; "
                                "issue 12 allows at most 1.5x the time per step, a ratio >= 0.67"))
        return variants

    def layout(self) -> None:
        """Recipe C's convolutions in NHWC against NCHW, interleaved; see bench/layout.py."""
        import keras
        import tensorflow as tf

        from bench.layout import LAYOUTS, channels_first_runs_here, training_steps
        from bench.timing import Contender, paired_ratio, run_rounds, timed

        if not channels_first_runs_here():
            self.results["layout"] = {"skipped": "this CPU's TensorFlow build has no channels-first convolution"}
            log("layout: skipped, no channels-first convolution kernel on this CPU")
            return
        rounds, steps, batch = (2, 20, 64) if self.quick else (5, 100, 64)
        log(f"layout: {' vs '.join(LAYOUTS)}, {rounds} rounds of {steps} steps")
        keras.mixed_precision.set_dtype_policy("float32")  # an earlier section may have left another
        images = tf.cast(tf.random.Generator.from_seed(0).uniform([batch, 28, 28, 1]) < 0.5, tf.float32)
        count = tf.constant(steps)
        contenders = []
        for data_format in LAYOUTS:
            run = training_steps(data_format, images)
            run(tf.constant(5)).numpy()  # trace and warm up
            contenders.append(Contender(data_format, steps * batch, timed(lambda run=run: run(count).numpy())))
        run_rounds(contenders, rounds)
        self.results["layout"] = {"rounds": rounds, "steps_per_window": steps, "batch_size": batch, "variants": [
            {"layout": c.name, "median": c.median, "rates": c.rates,
             "ratio": paired_ratio(c.rates, contenders[0].rates)} for c in contenders]}
        for variant in self.results["layout"]["variants"]:
            log(f"  {variant['layout']:15s} {variant['median']:7.0f} images/s {variant['ratio']:.2f}x")

    def threads(self) -> None:
        """Thread pools are fixed when TensorFlow starts, so each setting runs in its own process:
        TensorFlow's default, then each other setting, then the default again; each setting is
        compared with the mean of the two default runs around it."""
        others = [(2, 1), (1, 2)]
        order = [(0, 0), *others, (0, 0)]
        log(f"threads: {len(order)} processes, one per setting")
        rates: dict = {}
        for intra, inter in order:
            command = [sys.executable, str(Path(__file__)), "--data", str(self.data),
                       "--thread-worker", str(intra), str(inter)] + (["--quick"] if self.quick else [])
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"thread worker failed: {done.stderr[-3000:]}")
            rates.setdefault((intra, inter), []).append(json.loads(done.stdout.strip().splitlines()[-1])["median"])
        default = statistics.mean(rates[(0, 0)])
        self.results["threads"] = {"variants": [
            {"setting": "TensorFlow's default (one per core, both pools)" if s == (0, 0) else f"{s[0]} / {s[1]}",
             "intra": s[0], "inter": s[1], "median": statistics.mean(r), "rates": r,
             "ratio": statistics.mean(r) / default} for s, r in rates.items()]}
        for variant in self.results["threads"]["variants"]:
            log(f"  {variant['setting']:45s} {variant['median']:7.0f} images/s {variant['ratio']:.2f}x")

    def thread_worker(self, intra: int, inter: int) -> None:
        import tensorflow as tf

        if intra:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
        from bench.timing import run_rounds

        loop = self.loop(self.recipe_c())
        loop.warm_up()
        contender = self.loop_contender("ours", loop, 1_600 if self.quick else 4_800)
        run_rounds([contender], 2 if self.quick else 5)
        print(json.dumps({"median": contender.median, "rates": contender.rates}))

    def sweep(self) -> None:
        from bench import flops
        from bench.timing import paired_ratio, run_rounds

        rounds = 2 if self.quick else 3
        images = 1_600 if self.quick else 6_400
        log(f"sweep: {len(MODELS)} models x {len(BATCH_SIZES)} batch sizes, {rounds} rounds")
        rows = []
        matmul = self.matmul_contender()
        matmul_bf16 = self.matmul_contender("bfloat16")
        for model in MODELS:
            for batch in BATCH_SIZES:
                loop = self.loop(["data=fashion", f"model={model}", f"data.batch_size={batch}"])
                loop.warm_up()
                ours = self.loop_contender("ours", loop, images)
                pipeline = self.pipeline_contender(loop, 10 * images)
                matmul.rates.clear()
                matmul_bf16.rates.clear()
                run_rounds([ours, pipeline, matmul, matmul_bf16], rounds)
                per_image = flops.training_flops_per_image(loop.model.encoder, loop.model.decoder)
                rows.append({
                    "model": model, "batch_size": batch, "median": ours.median, "rates": ours.rates,
                    "flops_per_image": per_image, "gflops": ours.median * per_image / 1e9,
                    "peak_fraction": statistics.median(
                        r * per_image / (m * 1e9) for r, m in zip(ours.rates, matmul.rates, strict=True)),
                    "matmul_gflops": statistics.median(matmul.rates),
                    "precision": loop.policy,
                    "bf16_peak_fraction": statistics.median(
                        r * per_image / (m * 1e9) for r, m in zip(ours.rates, matmul_bf16.rates, strict=True)),
                    "pipeline": pipeline.median, "pipeline_ratio": paired_ratio(pipeline.rates, ours.rates),
                })
                row = rows[-1]
                log(f"  {model:8s} batch {batch:3d}: {ours.median:7.0f} images/s, "
                    f"{100 * row['peak_fraction']:.0f}% of matmul peak, pipeline {row['pipeline_ratio']:.0f}x")
        best = {model: max((r for r in rows if r["model"] == model), key=lambda r: r["peak_fraction"])
                for model in MODELS}
        self.results["sweep"] = {"rounds": rounds, "images_per_window": images, "rows": rows, "best": best}

    def profile(self) -> None:
        from bench import profile

        steps = 20 if self.quick else 60
        loop = self.loop(self.recipe_c())
        loop.warm_up()
        loop.steps(steps)
        logdir = self.args.profile_dir / time.strftime("%Y%m%d-%H%M%S")
        log(f"profile: {steps} steps of recipe C at batch 64 into {logdir.relative_to(ROOT)}")
        trace = profile.capture(logdir, lambda: loop.steps(steps))
        self.results["profile"] = {"what": "recipe C, batch 64, defaults", "logdir": str(logdir.relative_to(ROOT)),
                                   **profile.summarize(trace, steps)}
        log(f"  {self.results['profile']['wall_ms_per_step']:.1f} ms per step")

    def end_to_end(self) -> None:
        """The real command, two short epochs: its own images/s and its peak memory."""
        run_dir = self.workdir / "end_to_end"
        examples = 6_400 if self.quick else 19_200
        overrides = ["experiment=keras_vae_fashion", f"data.root={self.data / 'fashion'}", "trainer.epochs=2",
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
        self.results["end_to_end"] = {
            "command": "vae-train " + " ".join(shown), "images_per_second": results["images_per_second"],
            "wall_seconds": wall, "peak_rss_mb": peak_rss_kb / 1024, "train_images_per_epoch": examples,
        }
        log(f"  last epoch {results['images_per_second']:.0f} images/s, {wall:.1f} s, "
            f"peak RSS {peak_rss_kb / 1024:.0f} MB")

    def evaluation(self) -> None:
        from bench import runs

        log("evaluation: the test figures and the IWAE bound against the training step")
        self.results["evaluation"] = runs.evaluation(self)

    def colour(self) -> None:
        from bench.colour import colour

        log("colour images from a folder: the input pipeline against training")
        self.results["colour"] = colour(self)

    def whole_runs(self) -> None:
        from bench import runs

        self.results["whole_runs"] = runs.whole_runs(self)

    def startup(self) -> None:
        from bench.startup import startup

        self.results["startup"] = startup(self)

    # ---- driver ---------------------------------------------------------------------------------

    def run(self, sections: list[str]) -> dict:
        start = time.perf_counter()
        if "cli" in sections:
            self.cli()  # first: before this process imports TensorFlow
        import keras

        keras.utils.set_random_seed(0)
        self.results["machine"] = machine.describe()
        log(f"machine: {self.results['machine']['cpu']}, {self.results['machine']['cores']} cores, "
            f"TensorFlow {self.results['machine']['tensorflow']}")
        for section in SECTIONS[1:]:
            if section in sections:
                getattr(self, section)()
        self.note_rss("end")
        self.results["load_end"] = machine.load_average()
        self.results["total_seconds"] = time.perf_counter() - start
        return self.results


# Runs its arguments as a command, passes its exit code on and prints its peak resident memory (KiB).
PEAK_RSS_HELPER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass
class Variant:
    name: str
    setting: str
    overrides: list[str] = field(default_factory=list)
    note: str = ""
    patch: Callable | None = None  # applied to the built loop (bench-only variants)
    scale: float = 1.0  # of the window's images, for very slow variants
    slow: bool = False  # too slow for the rounds: one short window after them


class _LossRecorder:
    """Keras callback (duck-typed) keeping the running means Model.fit reports after each batch."""

    def __new__(cls):
        import keras

        class Recorder(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.means: list[tuple[float, float]] = []

            def on_train_batch_end(self, batch, logs=None):
                self.means.append((float(logs["reconstruction_loss"]), float(logs["kl_loss"])))

            def mean_of_last(self, count: int, latent_dim: int) -> float:
                """Mean over the last ``count`` batches of reconstruction + KL summed over dimensions
                (the reference reports the KL averaged over them), from the running means."""
                n = len(self.means)
                totals = [(i + 1) * (r + latent_dim * k) for i, (r, k) in enumerate(self.means)]
                return (totals[-1] - totals[n - count - 1]) / count

        return Recorder()


def _test_images(dataset, count: int):
    from bench.reference import as_float_images

    return as_float_images(dataset.test.images[:count])


def _unfused_loss(loop) -> None:
    """Bench-only variant: the reconstruction term as the reference computes it, sigmoid then the
    binary cross-entropy of probabilities, instead of the fused cross-entropy on logits."""
    import keras
    import tensorflow as tf

    def bce_of_probabilities(images, logits):
        per_pixel = keras.losses.binary_crossentropy(images, tf.sigmoid(logits))
        return 784.0 * tf.reduce_mean(tf.reshape(per_pixel, [tf.shape(images)[0], -1]), axis=1)

    loop.model.reconstruction_loss = bce_of_probabilities


def _constant_input(loop) -> None:
    """Bench-only variant: the same batch every step, so the input pipeline costs nothing."""
    import tensorflow as tf

    first = next(iter(loop.parts.pipelines.train(0)))
    loop.iterator = loop.trainer.epoch_iterator(tf.data.Dataset.from_tensors(first).repeat())


def _distributed_iterator(loop) -> None:
    """Bench-only variant: the pipeline wrapped by experimental_distribute_dataset, as the Trainer
    reads it on GPUs and several replicas, where on one CPU it reads the dataset's own iterator."""
    loop.iterator = iter(loop.trainer.strategy.experimental_distribute_dataset(loop.parts.pipelines.train(0).repeat()))


def main(argv=None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    if args.thread_worker:
        bench.thread_worker(*args.thread_worker)
        return 0
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections: {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    if not (args.data / "fashion").is_dir():
        raise SystemExit(f"{args.data / 'fashion'} does not exist: pass --data (make bench DATA=...) with the "
                         "folder holding fashion/ and mnist/")
    try:
        results = bench.run(sections)
    finally:
        shutil.rmtree(bench.workdir, ignore_errors=True)
    from bench import report

    if args.no_write:
        print(report.render(results))
    else:
        report.write(results, args.json, args.markdown)
        log(f"wrote {os.path.relpath(args.json, ROOT)} and {os.path.relpath(args.markdown, ROOT)}")
    log(f"done in {results['total_seconds']:.0f} s")
    return 0


def exit_now(code: int) -> None:
    """End without tearing the kept loops down (see :meth:`Bench.keep`): nothing is left to write."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
