"""``vae-eval``: evaluate a run folder's newest checkpoint that reads, write pictures and, on request, codes.

TensorFlow is imported only once the arguments are parsed, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from vae_train.config import Config, load_saved_settings
from vae_train.errors import ConfigError, VaeTrainError, exit_status
from vae_train.launch.process_exit import run_then_leave
from vae_train.run.layout import SAVED_CONFIG
from vae_train.runtime.start import start_tensorflow

EXAMPLES = """\
examples:
  vae-eval outputs/runs/2026-11-22/10-31-07
  vae-eval outputs/runs/2026-11-22/10-31-07 evaluation.iw_samples=500
  vae-eval outputs/runs/2026-11-22/10-31-07 --encode train --encode test
  vae-eval outputs/multirun/2026-11-22/11-00-00/3 data.root=/data/mnist --output /tmp/eval
  vae-eval outputs/runs/2026-11-22/10-31-07 --anomalies mnist --gif

Writes into <run>/eval/ (or --output): metrics.json (test figures of the newest checkpoint that
reads, in nats per image; VAEs also test_nll_iw; the codes' figures beside PCA's; anomaly figures
for a one-class run or with --anomalies), test_reconstruction_errors.npy (per test image: an anomaly
score), anomaly_scores_*.npy with anomaly_labels.npy and anomaly_is_anomaly.npy, the pictures as
PNG files (reconstructions, samples, manifold, interpolations, traversals, latent_scatter,
denoising, anomaly_scores), with --gif interpolation.gif, and with --encode SPLIT codes_SPLIT.npy
and labels_SPLIT.npy. A long likelihood bound (iw_samples=5000: hours) saves its progress there
part by part: after a stop, the same command resumes it.

Exit status: 1 for a problem with the run folder or the arguments; 75 when a write fails for want of
room or access (a full disk, a read-only folder): the same command works once there is room.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="vae-eval",
        description="Evaluate a vae-train run folder's newest checkpoint that reads on its test set.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run folder written by vae-train")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="changes to the run's saved config, e.g. evaluation.iw_samples=500 or data.root=<folder>")
    parser.add_argument("--encode", action="append", choices=("train", "test"), default=[], metavar="SPLIT",
                        help="also write the codes of this split (train or test; repeatable) as codes_SPLIT.npy")
    parser.add_argument("--output", type=Path, default=None, help="folder for the results (default: <run_dir>/eval)")
    parser.add_argument("--anomalies", metavar="DATA", default=None,
                        help="score a second dataset's test images as anomalies against the run's own test images: "
                             "a dataset name (mnist, fashion) or a folder of its four IDX files")
    parser.add_argument("--gif", action="store_true", help="also write interpolation.gif, an animation of the first "
                        "interpolation between two test images")
    # Intermixed: KEY=VALUE overrides may come after options too (vae-eval RUN --anomalies fashion data.root=...).
    return parser.parse_intermixed_args(argv)


def run_settings(run_dir: Path, overrides: list[str]) -> Config:
    """The typed settings a run folder was trained with, plus ``overrides``."""
    saved = Path(run_dir) / SAVED_CONFIG
    if not Path(run_dir).is_dir():
        raise ConfigError(f"{run_dir} is not a folder. Pass the folder of one vae-train run, e.g. "
                          "outputs/runs/<date>/<time>, or for a multirun one of its numbered job folders.")
    if not saved.is_file():
        raise ConfigError(f"{run_dir} is not a vae-train run folder: it has no {SAVED_CONFIG}, the config "
                          "vae-train saves when a run starts. Pass the folder of one run, e.g. "
                          "outputs/runs/<date>/<time>, or for a multirun one of its numbered job folders.")
    return load_saved_settings(saved, overrides)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("absl").setLevel(logging.WARNING)
    try:
        settings = run_settings(args.run_dir, args.overrides)
        start_tensorflow(settings.trainer.verbose_tensorflow)
        from vae_train.run.evaluate import evaluate_run  # heavy: TensorFlow

        evaluate_run(settings, args.run_dir, encode_splits=args.encode, output=args.output, anomalies=args.anomalies,
                     gif=args.gif)
    except VaeTrainError as err:
        print(f"vae-eval: {err}", file=sys.stderr)
        sys.exit(exit_status(err))


def run() -> None:
    """The ``vae-eval`` command, with a quick exit."""
    run_then_leave(main)


if __name__ == "__main__":
    run()
