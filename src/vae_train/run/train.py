"""One training run, from typed settings to a run folder holding checkpoints, TensorBoard
files and ``results.json``. The command line is a thin layer over :func:`train`."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from vae_train.config import Config
from vae_train.errors import StorageError, TrainingError
from vae_train.evaluation.pictures import enlarged, to_uint8
from vae_train.files import read_json_object, write_atomically
from vae_train.run.build import AssembledRun, build_trainer
from vae_train.run.export import export_models
from vae_train.run.layout import EXPORT_DIR, RESULTS_FILE, RUN_INFO_FILE
from vae_train.run.run_info import record_session
from vae_train.run.wall_time import WallTime
from vae_train.runtime import stopwatch
from vae_train.runtime.host_cpu import seconds_since_job_start, start_job_clock
from vae_train.runtime.storage import writing
from vae_train.runtime.workers import check_same_step, lost_worker

if TYPE_CHECKING:
    from vae_train.run.analyses import Analysis

log = logging.getLogger(__name__)

# The end-of-run figures' module, with scikit-learn and SciPy (about 1.5 s of imports): a thread imports it
# while the model trains, off the path to the first step (see runtime.start). Started once the first
# compiled call has returned: beside its tracing, both Python-bound, it slowed the tracing by as long.
ANALYSES_MODULE = "vae_train.run.analyses"


def _import_quietly(name: str) -> None:
    with contextlib.suppress(Exception):  # the end of the run imports it again, and reports the error there
        importlib.import_module(name)


def _model_description(model, parameters: dict[str, int]) -> str:
    """Markdown for TensorBoard's Text tab: the parameter counts, then Keras' summary of each part."""
    lines: list[str] = []
    for part in (model.encoder, model.decoder):
        part.summary(print_fn=lambda line, *_: lines.append(line))
    counts = ", ".join(f"{part} {count:,}" for part, count in parameters.items())
    return f"Parameters: {counts}; {sum(parameters.values()):,} in all.\n\n```\n" + "\n".join(lines) + "\n```"


def train(settings: Config, run_dir: Path, config_yaml: str = "") -> dict:
    """Train (or resume) in ``run_dir`` and return the flat results also written to results.json.

    ``results["finished"]`` is False when a signal stopped the run early; a non-finite loss raises
    TrainingError after writing results.json with the error; a write that fails for want of room or
    access raises StorageError, naming the checkpoint the same command resumes from.
    """
    start_job_clock()
    stopwatch.start_run()
    run = build_trainer(settings, run_dir)
    try:
        return _train(settings, run, config_yaml)
    except StorageError as err:
        noted = err.noting(run.trainer.checkpoints.resume_note())
        if noted is err:
            raise
        raise noted from err.__cause__
    except Exception as err:
        lost = lost_worker(run.parts.strategy, err)
        if lost is None:
            raise
        raise TrainingError(
            f"This run lost {lost}, so it stops: the workers "
            "train in lockstep. Find why that worker ended in its own log (killed, out of memory, its node "
            f"gone), then start every worker again. {run.trainer.checkpoints.resume_note()}") from err


def _train(settings: Config, run: AssembledRun, config_yaml: str) -> dict:
    trainer, writers, run_dir = run.trainer, run.writers, run.run_dir
    model, pipelines = run.parts.model, run.parts.pipelines
    with stopwatch.timed("restore"):
        resumed = trainer.restore_latest(settings.optimizer)
        check_same_step(run.parts.strategy, trainer.global_step)
    with writing(RUN_INFO_FILE, run_dir):
        record_session(run_dir)
    for name, text in run.parts.dataset.run_files.items():  # e.g. a folder's split, drawn by this run
        with writing(name, run_dir):
            write_atomically(run_dir / name, text)

    parameters = model.parameter_counts()
    if not resumed:
        writers.text("config", f"```yaml\n{config_yaml}\n```")
        writers.text("model", _model_description(model, parameters))
    log.info("Model %s: %s parameters; %d training and %d test images; %d steps per epoch.",
             settings.model.name, parameters, pipelines.train_size, pipelines.test_size,
             pipelines.steps_per_epoch)

    results = {
        "model": settings.model.name,
        "data": settings.data.name,
        "latent_dim": settings.latent_dim,
        "optimizer": settings.optimizer.name,
        "learning_rate": settings.optimizer.learning_rate,
        "batch_size": settings.data.batch_size,
        "seed": settings.seed,
        "parameters": sum(parameters.values()),
        "precision": run.parts.precision.policy,
    }
    fit_started = seconds_since_job_start()
    trainer.after_first_call.append(threading.Thread(target=_import_quietly, args=(ANALYSES_MODULE,),
                                                     name="import-analyses", daemon=True).start)
    try:
        history = trainer.fit()
    except TrainingError as err:
        _write_results(run_dir, {**results, "finished": False, "error": str(err),
                                 "epochs": int(trainer.epoch.numpy()), "steps": trainer.step})
        raise

    fit_ended = seconds_since_job_start()
    previous = read_json_object(run_dir / RESULTS_FILE) or {}
    last = history.epochs[-1] if history.epochs else None
    # A resumed run that had nothing left to train, or one stopped after an epoch without test figures
    # (evaluation.test_every_n_epochs), still reports the test figures of the weights it ends with.
    test_metrics = last.test if last and last.test else trainer.evaluator.evaluate(pipelines.test_batches())
    results.update({
        "finished": history.stopped_by is None,
        "epochs": int(trainer.epoch.numpy()),
        "steps": trainer.step,
        "train_loss": last.train["loss"] if last else previous.get("train_loss"),
        "images_per_second": last.images_per_second if last else previous.get("images_per_second"),
        # This session's: the means over its epochs, and the time from the process's start to its first step.
        "epoch_seconds": history.mean("epoch_seconds"),
        "between_epochs_seconds": history.mean("between_epochs_seconds"),
        "startup_seconds": history.startup_seconds,
        **{f"test_{name}": value for name, value in test_metrics.items()},
    })
    if history.stopped_by:
        results["stopped_by"] = history.stopped_by
    else:  # a stopped run skips these, to exit within a scheduler's grace period
        with stopwatch.timed("end_of_run_figures"):
            from vae_train.run.analyses import analyse  # waits for the thread's import if it is not done

            analysis = analyse(model, run.parts.dataset, pipelines, settings, progress_folder=run_dir)
            results.update(analysis.figures)
            write_analysis(writers, trainer.step, analysis)
        with writing("the exported models", run_dir / EXPORT_DIR), stopwatch.timed("export"):
            export_models(model, run_dir / EXPORT_DIR)
    if fit_started is not None:  # None where the job's start is unknown (outside Linux)
        steps = sum(record.epoch_seconds for record in history.epochs)
        wall_time = WallTime(fit_started, steps, fit_ended - fit_started - steps,
                             seconds_since_job_start() - fit_ended)
        results.update(wall_time.figures())
        results["wall_parts"] = stopwatch.parts()
        log.info("%s", wall_time.describe())
        log.info("Parts of it: %s.", stopwatch.describe(results["wall_parts"]))
    _write_results(run_dir, results)
    writers.flush()
    return results


def write_analysis(writers, step: int, analysis: Analysis) -> None:
    """The end-of-run figures as scalars of the test run at the last step (tagged by their names, see
    ``run.layout.scalar_tag``), and their pictures."""
    writers.scalars("test", step, {name: value for name, value in analysis.figures.items() if name != "iw_samples"})
    writers.images("test", step, {name: enlarged(to_uint8(picture)) for name, picture in analysis.pictures.items()})


def _write_results(run_dir: Path, results: dict) -> None:
    with writing(RESULTS_FILE, run_dir):
        write_atomically(run_dir / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
