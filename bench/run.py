"""``make bench``: vae-train's training loop against the reference implementation, on real data.

In one process, on the same data: the reference (recipe C's VAE in Keras ``Model.fit`` with a custom
``train_step``) and vae-train's loop on the identical model, batch and optimizer, timed in
interleaved windows; the machine's fp32 matmul rate and the model's FLOPs per image; whether both
reach the same loss; each speed lever against the defaults; thread pools (one process each); a
batch-size x model sweep with the input pipeline alone; a profile of where a step's time goes;
``vae-train`` end to end; the command line's latency. Writes ``docs/benchmarks.json`` and the
tables in ``docs/benchmarks.md``.

Each section is a module of bench/, a function of the running :class:`Bench` returning the section's
figures (``SECTIONS``); this file holds what several sections share and runs the chosen ones in order.

    python bench/run.py [--data ../shared/datasets] [--quick] [--sections headline,levers,...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `bench.*` when run as a script
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The CLI is timed first, from a process without TensorFlow (nor NumPy): the section modules import
# them only once a section runs.
from bench import machine  # noqa: E402
from bench.cli_latency import cli_latency  # noqa: E402
from bench.colour import colour  # noqa: E402
from bench.end_to_end import end_to_end  # noqa: E402
from bench.headline import headline  # noqa: E402
from bench.iw_bound import iw_bound  # noqa: E402
from bench.iwae_passes import iwae_passes  # noqa: E402
from bench.layout import layout  # noqa: E402
from bench.levers import levers  # noqa: E402
from bench.machine import log  # noqa: E402
from bench.profile import profile  # noqa: E402
from bench.runs import evaluation, whole_runs  # noqa: E402
from bench.same_results import same_results  # noqa: E402
from bench.startup import startup  # noqa: E402
from bench.sweep import sweep  # noqa: E402
from bench.threads import thread_worker, threads  # noqa: E402

# In the order they run (and --sections lists them); each returns the figures filed under its name.
SECTIONS: dict[str, Callable[[Bench], dict]] = {
    "cli": cli_latency, "headline": headline, "same_results": same_results, "levers": levers, "layout": layout,
    "threads": threads, "sweep": sweep, "profile": profile, "end_to_end": end_to_end, "evaluation": evaluation,
    "iw_bound": iw_bound, "iwae_passes": iwae_passes, "colour": colour, "whole_runs": whole_runs, "startup": startup,
}


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
    """What several sections share: the settings and data, vae-train's loops (kept alive), the
    contenders they time, and the results and scratch folder of the run."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.quick = args.quick
        self.data = args.data.resolve()
        self.workdir = Path(tempfile.mkdtemp(prefix="vae-train-bench-"))
        self.results: dict = {"command": "python bench/run.py" + (" --quick" if args.quick else ""),
                              "load_start": machine.load_average(), "peak_rss_mb": {}}
        self._dataset_cache: dict = {}
        self._kept: list = []

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

    @staticmethod
    def levers_precision(settings) -> str:
        import tensorflow as tf

        from vae_train.runtime.precision import resolve_precision

        return resolve_precision(settings.trainer.precision, gpus=len(tf.config.list_physical_devices("GPU"))).policy


def run_sections(bench: Bench, names: list[str]) -> dict:
    start = time.perf_counter()
    chosen = {name: section for name, section in SECTIONS.items() if name in names}
    if "cli" in chosen:
        bench.results["cli"] = chosen.pop("cli")(bench)  # first: before this process imports TensorFlow
    import keras

    keras.utils.set_random_seed(0)
    bench.results["machine"] = machine.describe()
    log(f"machine: {bench.results['machine']['cpu']}, {bench.results['machine']['cores']} cores, "
        f"TensorFlow {bench.results['machine']['tensorflow']}")
    for name, section in chosen.items():
        # Held in its place in the JSON ahead of any key the section files itself (the headline's pipeline).
        bench.results[name] = None
        bench.results[name] = section(bench)
    bench.note_rss("end")
    bench.results["load_end"] = machine.load_average()
    bench.results["total_seconds"] = time.perf_counter() - start
    return bench.results


def main(argv=None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    if args.thread_worker:
        thread_worker(bench, *args.thread_worker)
        return 0
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections: {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    if not (args.data / "fashion").is_dir():
        raise SystemExit(f"{args.data / 'fashion'} does not exist: pass --data (make bench DATA=...) with the "
                         "folder holding fashion/ and mnist/")
    try:
        results = run_sections(bench, sections)
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
