"""Sweeps: the summary and HParams files of a multirun, Optuna, the joblib and submitit launchers,
and the thread and GPU defaults that share a machine between parallel jobs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata

from conftest import QUIET_EVALUATION, compose, tiny_overrides
from vae_train.config.resolvers import available_cores, concurrent_jobs, threads_per_job
from vae_train.launch.sweeps.hparams import job_hyperparameters, swept_hyperparameters
from vae_train.launch.sweeps.outcome import ERROR_FILE, FailedJob, sweep_score
from vae_train.launch.sweeps.summary import SUMMARY_CSV, SUMMARY_MD, write_summary

SMALL_DENSE = ["model=dense_ae", "model.hidden_units=[32]"]
SMALL_CONV = ["model.encoder_filters=[8,16]", "model.decoder_filters=[16,8]", "model.decoder_start_channels=16"]


def run_sweep(*overrides: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("VAE_TRAIN_DATA", None)
    command = [sys.executable, "-m", "vae_train.launch.train_cli", "-m", *QUIET_EVALUATION, *overrides]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def read_summary(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / SUMMARY_CSV).open() as handle:
        return list(csv.DictReader(handle))


def hparams_plugin_data(folder: Path, tag: str):
    accumulator = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    accumulator.Reload()
    return accumulator.SummaryMetadata(tag).plugin_data.content, accumulator


def session_status(job_dir: Path) -> str:
    """The HParams status a job's session ended with, by name (STATUS_SUCCESS, ...)."""
    content, _ = hparams_plugin_data(job_dir, "_hparams_/session_end_info")
    return api_pb2.Status.Name(hparams_metadata.parse_session_end_info_plugin_data(content).status)


def tensorboard_runs(logdir: Path) -> set[str]:
    """The runs TensorBoard lists for ``logdir``, by name."""
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    return set(multiplexer.Runs())


# ---------------------------------------------------------------------------------------------
# Without training


def test_sweep_score_is_the_negative_elbo_for_vaes_and_the_test_loss_otherwise():
    assert sweep_score({"test_loss": 90.0}) == 90.0
    # beta != 1 makes the loss differ from the negative ELBO; the score stays comparable.
    assert sweep_score({"test_loss": 80.0, "test_elbo": -100.0}) == 100.0


def test_swept_hyperparameters_follow_the_sweepers_rules():
    from tensorboard.plugins.hparams import summary_v2 as hp

    params = {"optimizer": "choice(adam, sgd)", "optimizer.learning_rate": "tag(log, interval(1e-4, 1e-2))",
              "latent_dim": "tag(log, int(interval(2, 64)))", "data.batch_size": "choice(32, 64)"}
    swept = swept_hyperparameters(params, ["data.batch_size=32", "model=dense_ae,conv_ae", "seed=range(1,3)",
                                           "trainer.epochs=2"])
    # A fixed value on the command line takes data.batch_size out of the sweep, as Optuna does.
    assert list(swept) == ["optimizer", "optimizer.learning_rate", "latent_dim", "model", "seed"]
    assert isinstance(swept["optimizer"], hp.Discrete) and swept["optimizer"].values == ["adam", "sgd"]
    assert isinstance(swept["optimizer.learning_rate"], hp.RealInterval)
    assert (swept["optimizer.learning_rate"].min_value, swept["optimizer.learning_rate"].max_value) == (1e-4, 1e-2)
    assert isinstance(swept["latent_dim"], hp.IntInterval)
    assert swept["seed"].values == [1.0, 2.0]
    # Mixed types have no HParams domain; the key is still a hyperparameter.
    assert swept_hyperparameters(None, ["x=1,abc"]) == {"x": None}


def test_job_hyperparameters_keep_their_types():
    values = job_hyperparameters(["model=cvae", "latent_dim=16", "optimizer.learning_rate=0.001",
                                  "data.verify_checksums=false", "model.hidden_units=[16,8]", "+extra=null"])
    assert values == {"model": "cvae", "latent_dim": 16.0, "optimizer.learning_rate": 0.001,
                      "data.verify_checksums": False, "model.hidden_units": "[16, 8]", "extra": "null"}


def make_job(sweep: Path, number: int, overrides: list[str], results: dict | None = None,
             error: str | None = None) -> Path:
    folder = sweep / str(number)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": number}}}))
    if results is not None:
        (folder / "results.json").write_text(json.dumps(results))
    if error is not None:
        (folder / ERROR_FILE).write_text(json.dumps({"error": error}))
    return folder


def test_the_summary_ranks_finished_jobs_and_lists_the_others_with_their_error(tmp_path):
    common = ["data.root=/data", "trainer.epochs=3"]
    make_job(tmp_path, 0, [*common, "model=dense_ae"], {"test_loss": 120.0, "train_loss": 125.0, "finished": True})
    make_job(tmp_path, 1, [*common, "model=cvae"],
             {"test_loss": 95.0, "test_elbo": -110.0, "test_kl": 5.0, "finished": True})
    make_job(tmp_path, 2, [*common, "model=conv_ae"], error="TrainingError: The loss became non-finite | twice")
    make_job(tmp_path, 3, [*common, "model=conv_ae"])  # killed: no results, no error
    make_job(tmp_path, 4, [*common, "model=conv_ae"], {"test_loss": 101.0, "finished": True})

    rows = write_summary(tmp_path)
    # The VAE ranks by its negative ELBO (110), not its loss (95).
    assert [row.number for row in rows] == [4, 1, 0, 3, 2]
    assert [row.status for row in rows] == ["ok", "ok", "ok", "unfinished", "failed"]

    table = read_summary(tmp_path)
    assert [line["job"] for line in table] == ["4", "1", "0", "3", "2"]
    assert [float(line["score"]) for line in table[:3]] == [101.0, 110.0, 120.0]
    assert table[1]["model"] == "cvae" and table[1]["test_elbo"] == "-110.0" and table[0]["test_elbo"] == ""
    assert table[4]["error"].startswith("TrainingError: The loss became non-finite")
    assert "killed" in table[3]["error"] and table[3]["score"] == ""

    markdown = (tmp_path / SUMMARY_MD).read_text()
    assert "5 jobs: 3 ok, 1 failed, 1 unfinished" in markdown
    assert "Every job: `data.root=/data trainer.epochs=3`" in markdown
    table_lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table_lines) == 1 + 5 and "data.root" not in table_lines[0]
    assert "non-finite \\| twice" in markdown  # a pipe in an error cannot break the table


def test_a_failed_job_is_not_a_number_an_optuna_trial_could_record():
    failed = FailedJob("TrainingError: NaN")
    with pytest.raises(TypeError):
        float(failed)
    assert "TrainingError: NaN" in str(failed)


@pytest.mark.parametrize(("n_jobs", "cores", "concurrent", "threads"), [
    (2, 8, 2, 4), (-1, 8, 8, 1), (-2, 8, 7, 1), (3, 2, 3, 1), (1, 8, 1, None), (None, 8, 1, None),
])
def test_parallel_jobs_share_the_cores(n_jobs, cores, concurrent, threads):
    assert concurrent_jobs(n_jobs, cores) == concurrent
    assert threads_per_job(concurrent, cores) == threads


@pytest.fixture
def hydra_job_config():
    """Compose as Hydra does for a job of a multirun, then restore Hydra's global config."""
    saved = HydraConfig.instance().cfg

    def job(overrides: list[str], number: int):
        cfg = compose(overrides, return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.mode = RunMode.MULTIRUN
            cfg.hydra.job.num = number
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield job
    HydraConfig.instance().cfg = saved


def test_joblib_jobs_get_a_share_of_the_cores_and_a_gpu_each(hydra_job_config):
    cfg = hydra_job_config(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], number=3)
    assert cfg.trainer.cpu_threads == threads_per_job(2, available_cores())
    assert cfg.trainer.gpu == 3
    cfg = hydra_job_config(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.cpu_threads=5",
                            "trainer.gpu=null"], number=3)
    assert (cfg.trainer.cpu_threads, cfg.trainer.gpu) == (5, None)


def test_other_launchers_leave_threads_and_gpus_alone(hydra_job_config):
    cfg = hydra_job_config([], number=1)  # the basic launcher runs one job at a time
    assert (cfg.trainer.cpu_threads, cfg.trainer.gpu) == (None, None)
    cfg = hydra_job_config(["hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=3"], number=1)
    assert (cfg.trainer.cpu_threads, cfg.trainer.gpu) == (3, None)
    # Outside Hydra (tests, a saved config) the defaults resolve to None as well.
    HydraConfig.instance().cfg = None
    assert OmegaConf.to_container(compose([]).trainer, resolve=True)["cpu_threads"] is None


# ---------------------------------------------------------------------------------------------
# Sweeps that train


def test_a_2x2_multirun_writes_both_summaries_and_the_hparams_dashboard(tiny_data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_sweep(*tiny_overrides(tiny_data_dir), *SMALL_CONV, "model=conv_ae,cvae", "latent_dim=2,3",
                       f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    table = read_summary(sweep)
    assert len(table) == 4 and {line["status"] for line in table} == {"ok"}
    assert {(line["model"], line["latent_dim"]) for line in table} == {
        (model, dim) for model in ("conv_ae", "cvae") for dim in ("2", "3")}
    scores = [float(line["score"]) for line in table]
    assert scores == sorted(scores)
    for line in table:
        results = json.loads((sweep / line["folder"] / "results.json").read_text())
        assert float(line["score"]) == pytest.approx(sweep_score(results))
        assert (line["test_elbo"] != "") == (line["model"] == "cvae")
    markdown = (sweep / SUMMARY_MD).read_text()
    assert sum(line.startswith("| ") for line in markdown.splitlines()) == 1 + 4
    assert "Best of 4 jobs" in result.stdout + result.stderr

    # TensorBoard lists each job by its number, its train and test runs under it, and no empty run
    # for the sweep's root.
    assert tensorboard_runs(sweep) == {f"{job}{split}" for job in range(4) for split in ("", "/train", "/test")}
    # HParams: each job's folder is a session holding the sweep's declaration of its hyperparameters
    # and metrics, the job's values, its score and its status, beside its train/ and test/.
    for line in table:
        session = sweep / line["folder"]
        content, accumulator = hparams_plugin_data(session, "_hparams_/experiment")
        experiment = hparams_metadata.parse_experiment_plugin_data(content)
        domains = {info.name: info for info in experiment.hparam_infos}
        assert set(domains) == {"model", "latent_dim"}
        assert [value.string_value for value in domains["model"].domain_discrete.values] == ["conv_ae", "cvae"]
        assert {(metric.name.group, metric.name.tag) for metric in experiment.metric_infos} >= {
            ("", "sweep_score"), ("test", "loss/total"), ("test", "loss/elbo")}
        content, accumulator = hparams_plugin_data(session, "_hparams_/session_start_info")
        values = hparams_metadata.parse_session_start_info_plugin_data(content).hparams
        assert values["model"].string_value == line["model"]
        assert values["latent_dim"].number_value == float(line["latent_dim"])
        score_events = accumulator.Tensors("sweep_score")
        assert float(score_events[-1].tensor_proto.float_val[0]) == pytest.approx(float(line["score"]))
        assert session_status(session) == "STATUS_SUCCESS"
        assert {"train", "test"} <= {path.name for path in session.iterdir()}
    assert "Sweep summary: sweep/summary.md" in result.stdout + result.stderr
    assert markdown.startswith("# Sweep sweep\n")  # the folder as seen from the working directory


@pytest.mark.slow  # a launcher plugin's integration; the basic launcher's multirun runs by default
def test_joblib_runs_jobs_in_parallel_processes_and_a_failure_does_not_stop_the_sweep(tiny_data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_sweep(*tiny_overrides(tiny_data_dir), *SMALL_DENSE, "optimizer=sgd",
                       "optimizer.learning_rate=0.01,1e30", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                       f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr

    table = read_summary(sweep)
    assert [(line["job"], line["status"]) for line in table] == [("0", "ok"), ("1", "failed")]
    assert "non-finite" in table[1]["error"] and "non-finite" in (sweep / "1" / ERROR_FILE).read_text()
    assert "1 of 2 jobs did not finish" in result.stdout + result.stderr
    assert [session_status(sweep / str(job)) for job in (0, 1)] == ["STATUS_SUCCESS", "STATUS_FAILURE"]
    # Two worker processes, each limiting TensorFlow to its share of the cores.
    assert "Joblib.Parallel(n_jobs=2,backend=loky,prefer=processes" in result.stdout + result.stderr
    threads = threads_per_job(2, available_cores())
    for number in (0, 1):
        assert f"CPU threads: {threads};" in (sweep / str(number) / "vae-train.log").read_text()


@pytest.mark.slow  # a sweeper plugin's integration
def test_an_optuna_search_reports_the_best_trial_and_records_failed_ones(tiny_data_dir, tmp_path):
    optuna = pytest.importorskip("optuna")
    sweep, storage = tmp_path / "sweep", f"sqlite:///{tmp_path / 'optuna.db'}"
    # latent_dim 5000 is out of range: those trials fail before training. With the sampler seeded
    # by seed=42, the three trials draw 2, 5000, 5000.
    result = run_sweep(*tiny_overrides(tiny_data_dir), *SMALL_DENSE, "hparams_search=optuna",
                       "hydra.sweeper.n_trials=3", "latent_dim=choice(2, 5000)", f"hydra.sweeper.storage={storage}",
                       f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    study = optuna.load_study(study_name="vae-train", storage=storage)
    states = [trial.state.name for trial in study.trials]
    assert len(states) == 3 and set(states) == {"COMPLETE", "FAIL"}
    table = read_summary(sweep)
    finished = [line for line in table if line["status"] == "ok"]
    assert len(table) == 3 and len(finished) == states.count("COMPLETE")
    assert all("latent_dim must be" in line["error"] for line in table if line["status"] == "failed")

    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(float(finished[0]["score"]))
    assert best["best_value"] == pytest.approx(study.best_value)
    for key, value in best["best_params"].items():
        assert finished[0][key] == str(value)
    assert "Best value" in result.stdout + result.stderr


@pytest.mark.slow
def test_the_submitit_launcher_runs_real_jobs(tiny_data_dir, tmp_path):
    """The code path of hydra/launcher=submitit_slurm, with submitit's local executor."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    result = run_sweep(*tiny_overrides(tiny_data_dir), *SMALL_DENSE, "latent_dim=2,3",
                       "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
                       "hydra.launcher.cpus_per_task=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    table = read_summary(sweep)
    assert sorted(line["latent_dim"] for line in table) == ["2", "3"]
    assert {line["status"] for line in table} == {"ok"}
    assert all("CPU threads: 1;" in (sweep / line["folder"] / "vae-train.log").read_text() for line in table)
    assert (sweep / ".submitit").is_dir()


@pytest.mark.slow
def test_the_jobs_of_a_multirun_trace_their_own_functions_without_a_retracing_warning(tiny_data_dir, tmp_path):
    # Six jobs in one process (the basic launcher): TensorFlow's detector counted each job's first
    # trace of the same code as a retrace and warned from the fifth on.
    result = run_sweep(*tiny_overrides(tiny_data_dir), *SMALL_DENSE, "seed=1,2,3,4,5,6",
                       f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert "6 jobs: 6 ok" in (tmp_path / "sweep" / SUMMARY_MD).read_text()
    assert "retracing" not in console and "absl::InitializeLog" not in console
