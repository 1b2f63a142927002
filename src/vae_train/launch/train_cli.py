"""``vae-train``: compose the config with Hydra, train, return the sweep score for sweepers.

TensorFlow is imported only inside the task function, so ``--help``, ``--cfg job`` and a
config error answer in a fraction of a second.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from vae_train.config import register, to_settings
from vae_train.errors import VaeTrainError, exit_status
from vae_train.files import shown_path
from vae_train.launch.argv import options_first
from vae_train.launch.fast_help import asks_for_help, list_groups_from_one_repository
from vae_train.launch.process_exit import run_then_leave
from vae_train.launch.run_lock import hold_run_folder, release_run_folder
from vae_train.launch.sweeps.outcome import FailedJob, describe_error, sweep_score
from vae_train.runtime import stopwatch
from vae_train.runtime.cluster import check_step_matches_launcher, is_chief_process
from vae_train.runtime.host_cpu import seconds_since_process_start, starting_first_job
from vae_train.runtime.start import start_tensorflow

log = logging.getLogger("vae_train")



def config_dir() -> str:
    """``conf/`` inside the installed package, else at the root of a source checkout."""
    package = Path(__file__).resolve().parents[1]
    packaged = package / "conf"
    return str(packaged if packaged.is_dir() else package.parents[1] / "conf")


def compose(overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """The config ``vae-train <overrides>`` runs with, composed without running (tests, ``make bench``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


# The closing line's figures, when a run has them: (results.json key, label).
CLOSING_FIGURES = (
    ("test_loss", "test loss"), ("test_elbo", "ELBO"), ("test_nll_iw", "NLL bound"),
    ("test_recipe_loss", "recipe loss"), ("test_rounded_accuracy", "rounded accuracy"),
)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def closing_line(results: dict, run_dir: str, seconds: float) -> str:
    """One line at the end of a run: its final test figures, its wall time, and where to look."""
    figures = []
    for key, label in CLOSING_FIGURES:
        if isinstance(results.get(key), int | float):
            samples = f" (K={results['iw_samples']})" if key == "test_nll_iw" and "iw_samples" in results else ""
            figures.append(f"{label}{samples} {results[key]:.4g}")
    if "stopped_by" in results:
        head = f"Stopped by {results['stopped_by']} after {_duration(seconds)}; the same command resumes it"
    else:
        head = f"Finished in {_duration(seconds)}"
    return (f"{head}: {', '.join(figures) or 'no test figures'}. Run folder {run_dir} "
            f"(results in {run_dir}/results.json); tensorboard --logdir {run_dir}")


def _leave_the_log_to_the_chief(run_dir: Path) -> None:
    """The other workers of a multi-worker run log to the console only: Hydra gave every task a handler
    on the run folder's log, where their lines would interleave with the chief's."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).is_relative_to(run_dir):
            root.removeHandler(handler)
            handler.close()


register()
if asks_for_help(sys.argv[1:]):
    list_groups_from_one_repository()


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> float | FailedJob:
    """Train the composed config; return its sweep score (what Hydra's sweepers minimize)."""
    started = time.perf_counter()
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    # The first job of a process counts from the process's start: the interpreter and Hydra are its cost.
    before = (seconds_since_process_start() or 0.0) if starting_first_job() else 0.0
    try:
        launcher = HydraConfig.get().launcher
        check_step_matches_launcher(launcher.get("nodes"), launcher.get("tasks_per_node"))
        if not is_chief_process():
            _leave_the_log_to_the_chief(run_dir)
        # A single run's preflight holds it already; a multirun's job takes its own folder's here.
        hold_run_folder(run_dir)
        settings = to_settings(cfg)
        importing = time.perf_counter()
        start_tensorflow(settings.trainer.verbose_tensorflow)
        from vae_train.run.train import train  # heavy: TensorFlow

        stopwatch.launched({"interpreter_and_hydra": before, "tensorflow_import": time.perf_counter() - importing})

        results = train(settings, run_dir, OmegaConf.to_yaml(cfg))
    except Exception as err:
        if multirun:
            # Returned, not raised: Hydra's basic sweeper would end the sweep, summary unwritten,
            # at the first failed job. The sweep callback records the error in the job folder.
            log.error("The job failed: %s", err, exc_info=not isinstance(err, VaeTrainError))
            return FailedJob(describe_error(err))
        # Hydra's switch for full tracebacks applies to our own errors too.
        if not isinstance(err, VaeTrainError) or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("%s", err)
        sys.exit(exit_status(err))
    finally:
        release_run_folder(run_dir)
    log.info("%s", closing_line(results, shown_path(run_dir), time.perf_counter() - started))
    if "stopped_by" in results:
        # The shell's convention for death by a signal, so schedulers see the job was stopped.
        sys.exit(128 + signal.Signals[results["stopped_by"]].value)
    return sweep_score(results)


def run() -> None:
    """The ``vae-train`` command: options and overrides in any order, then Hydra, then a quick exit."""
    sys.argv[1:] = options_first(sys.argv[1:])
    run_then_leave(main)


if __name__ == "__main__":
    run()
