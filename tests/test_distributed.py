"""Several replicas, and several workers, train exactly like one device for the same global batch.

TensorFlow's logical devices and its cluster are fixed when it starts, so those runs happen in
fresh processes (tests/distributed_jobs.py); the one-device references run here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import QUIET_EVALUATION, compose, make_idx_folder, tiny_overrides
from vae_train.config import to_settings
from vae_train.run.train import train
from vae_train.runtime import slurm
from vae_train.runtime.cluster import is_chief_task
from vae_train.runtime.devices import gpu_for_job
from vae_train.runtime.slurm import gpu_layout

HELPER = Path(__file__).with_name("distributed_jobs.py")
SMALL_CONV = ["model.encoder_filters=[8,16]", "model.decoder_filters=[16,8]", "model.decoder_start_channels=16"]


def helper_env(**settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2", **settings}


def float32() -> list[str]:
    """Pins float32 where the config has trainer.precision: its auto is bfloat16 on a CPU with
    AMX-BF16, whose rounding would swamp the differences these tests look for."""
    return ["trainer.precision=float32"] if "precision" in compose([]).trainer else []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(("task_type", "task_id", "jobs", "chief"), [
    (None, None, [], True),  # no cluster: a single process
    ("worker", 0, ["worker"], True),
    ("worker", 1, ["worker"], False),
    ("chief", 0, ["chief", "worker"], True),
    ("worker", 0, ["chief", "worker"], False),  # with a chief task, worker 0 is an ordinary worker
    ("evaluator", 0, ["evaluator", "worker"], False),
])
def test_the_chief_is_the_chief_task_else_worker_0(task_type, task_id, jobs, chief):
    assert is_chief_task(task_type, task_id, jobs) is chief


def test_parallel_jobs_take_gpus_round_robin():
    assert [gpu_for_job(job, 2) for job in range(5)] == [0, 1, 0, 1, 0]
    assert [gpu_for_job(job, 4) for job in range(4)] == [0, 1, 2, 3]
    assert gpu_for_job(7, 1) == 0


def test_mirrored_replicas_train_like_one_device(tiny_data_dir, tmp_path):
    cases = {
        # clipnorm: Keras 3 clipped each replica's partial gradient before summing them, which the
        # loop corrects; without that, the weights differ by ~1e-3 here. (RMSprop, not Adam, whose
        # steps hardly change when a whole gradient is scaled.)
        "conv_ae": ["model=conv_ae", *SMALL_CONV, "optimizer=rmsprop", "optimizer.clipnorm=1.0"],
        "cvae": ["model=cvae", *SMALL_CONV],
    }
    output = tmp_path / "replicas.json"
    result = subprocess.run(
        [sys.executable, str(HELPER), "replicas", str(tiny_data_dir), str(output),
         *(json.dumps([*overrides, *float32(), *QUIET_EVALUATION]) for overrides in cases.values())],
        cwd=HELPER.parent, env=helper_env(), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report = dict(zip(cases, json.loads(output.read_text()), strict=True))

    runs = report["conv_ae"]
    assert runs["replicas"] == 2
    assert runs["mirrored"]["steps"] == runs["one_device"]["steps"] == 4
    assert runs["mirrored"]["train_loss"] == pytest.approx(runs["one_device"]["train_loss"], rel=1e-6)
    assert runs["mirrored"]["test_loss"] == pytest.approx(runs["one_device"]["test_loss"], rel=1e-6)
    assert runs["max_weight_difference"] < 1e-5
    # Each replica of a VAE draws its own noise, so it matches one device in distribution only: a
    # loss off by a factor (a wrong batch scaling) or a crash in the noise generator still fails.
    vae = report["cvae"]
    assert vae["mirrored"]["test_loss"] == pytest.approx(vae["one_device"]["test_loss"], rel=0.02)


WORKER_OVERRIDES = ["model=dense_ae", "model.hidden_units=[32]", "optimizer=rmsprop", "optimizer.clipnorm=1.0",
                    "trainer.epochs=2", *QUIET_EVALUATION]


def run_workers(data: Path, run_dirs: list[Path], environments: list[dict], overrides: list[str],
                tmp_path: Path) -> list[tuple[subprocess.Popen, str, str]]:
    """One process per worker, each with its environment; their processes and outputs once all end."""
    workers = []
    for index, (run_dir, environment) in enumerate(zip(run_dirs, environments, strict=True)):
        command = [sys.executable, str(HELPER), "worker", str(data), str(run_dir),
                   str(tmp_path / f"weights{index}.npz"), *overrides]
        workers.append(subprocess.Popen(command, cwd=HELPER.parent, env=helper_env(**environment),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for process in workers:
            outputs.append(process.communicate(timeout=240))
    finally:
        for process in workers:
            process.kill()
    return [(process, stdout, stderr) for process, (stdout, stderr) in zip(workers, outputs, strict=True)]


def assert_lockstep_like_one_device(finished, data: Path, overrides: list[str], tmp_path: Path) -> None:
    for process, _, stderr in finished:
        assert process.returncode == 0, stderr[-3000:]
    chief, other = (np.load(tmp_path / f"weights{index}.npz") for index in range(2))
    assert len(chief.files) == len(other.files) > 0
    for name in chief.files:
        np.testing.assert_array_equal(chief[name], other[name])

    reported = [json.loads(stdout.strip().splitlines()[-1]) for _, stdout, _ in finished]
    assert reported[0] == reported[1]
    # The same global batch on one device gives the same training.
    single = train(to_settings(compose([*tiny_overrides(data), *overrides])), tmp_path / "single")
    assert reported[0]["steps"] == single["steps"] == 8
    assert reported[0]["train_loss"] == pytest.approx(single["train_loss"], rel=1e-5)
    assert reported[0]["test_loss"] == pytest.approx(single["test_loss"], rel=1e-5)


@pytest.mark.slow  # the SLURM case below trains the same cluster, met through SLURM's variables
def test_two_workers_over_localhost_train_in_lockstep_and_only_the_chief_writes(tmp_path):
    # 70 test images make a last batch of 6, shared unevenly between the workers.
    data = make_idx_folder(tmp_path / "mnist", train=128, test=70)
    overrides = [*WORKER_OVERRIDES, *float32()]
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    environments = [{"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                     "TMPDIR": str(scratch)} for index in range(2)]
    finished = run_workers(data, [tmp_path / "run0", tmp_path / "run1"], environments,
                           [*overrides, "trainer.strategy=multi_worker"], tmp_path)

    assert_lockstep_like_one_device(finished, data, overrides, tmp_path)
    assert {"results.json", "train", "test", "checkpoints"} <= {path.name for path in (tmp_path / "run0").iterdir()}
    # The other worker wrote into a scratch folder, removed when it exited.
    assert not [path for path in (tmp_path / "run1").rglob("*") if path.is_file()]
    assert not any(scratch.iterdir())


def free_port_pair() -> int:
    """A port whose successor is free too: a SLURM node's two tasks listen on both."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("", port + 1))
            except OSError:
                continue
        return port


def slurm_task(rank: int, tasks: int = 2) -> dict[str, str]:
    """What srun sets for task ``rank`` of a one-node step of ``tasks`` tasks."""
    return {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
            "SLURM_NODEID": "0", "SLURM_NTASKS": str(tasks), "SLURM_STEP_NUM_TASKS": str(tasks),
            "SLURM_STEP_NUM_NODES": "1", "SLURM_STEP_NODELIST": "localhost", "SLURM_STEP_TASKS_PER_NODE": str(tasks)}


def test_a_slurm_step_of_two_tasks_trains_as_two_workers_and_only_the_chief_writes(tmp_path):
    # 70 test images make a last batch of 6, shared unevenly between the workers.
    data = make_idx_folder(tmp_path / "mnist", train=128, test=70)
    overrides = [*WORKER_OVERRIDES, *float32()]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    run_dir = tmp_path / "run"  # one folder, as on a shared file system
    port = free_port_pair()
    # No GPU here, and no nvidia-smi: the resolver's zero-GPU case. strategy=auto picks multi_worker.
    environments = [{**slurm_task(rank), "TMPDIR": str(scratch)} for rank in range(2)]
    finished = run_workers(data, [run_dir, run_dir], environments, [*overrides, f"trainer.worker_port={port}"],
                           tmp_path)

    assert_lockstep_like_one_device(finished, data, overrides, tmp_path)
    for rank, (_, _, stderr) in enumerate(finished):  # the log says which worker is which
        role = "the chief" if rank == 0 else "not the chief"
        assert f"Worker: worker {rank} of 2 workers (SLURM job 4242) at localhost:{port + rank}" in stderr
        assert f", {role}." in stderr
    assert {"results.json", "train", "test", "checkpoints"} <= {path.name for path in run_dir.iterdir()}
    assert len(list((run_dir / "train").iterdir())) == 1  # one event file: the chief's
    assert not any(scratch.iterdir())


@pytest.mark.parametrize(("tasks", "gpus", "bound", "layout"), [
    (2, 0, False, (2, 1, False)),  # no GPU: one placeholder per task, nothing made visible
    (2, 4, False, (4, 2, True)),  # the resolver splits the node's GPUs evenly
    (2, 2, False, (2, 1, True)),  # one GPU per task
    (2, 1, True, (2, 1, False)),  # SLURM bound a GPU to each task already: left as it is
    (4, 2, False, (4, 1, False)),  # fewer GPUs than tasks: they share them
])
def test_the_slurm_resolver_gets_a_gpu_layout_it_can_lay_out(tasks, gpus, bound, layout):
    assert tuple(gpu_layout(tasks, gpus, bound).values()) == layout


def set_slurm_step(monkeypatch, rank: int, nodes: str, tasks_per_node: str, tasks: int) -> None:
    for name in ("TF_CONFIG", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    for name, value in {"SLURM_PROCID": str(rank), "SLURM_STEP_NUM_TASKS": str(tasks), "SLURM_JOB_ID": "7",
                        "SLURM_STEP_NODELIST": nodes, "SLURM_STEP_TASKS_PER_NODE": tasks_per_node}.items():
        monkeypatch.setenv(name, value)


def test_two_nodes_without_gpus_make_a_cluster_of_their_tasks(monkeypatch):
    set_slurm_step(monkeypatch, rank=3, nodes="gpu[07-08]", tasks_per_node="2(x2)", tasks=4)
    monkeypatch.setattr(slurm, "_gpus_on_this_node", lambda: 0)
    resolver = slurm.slurm_cluster_resolver(port_base=9000)

    assert resolver.cluster_spec().as_dict() == {"worker": ["gpu07:9000", "gpu07:9001", "gpu08:9000", "gpu08:9001"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 3)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_each_task_of_a_node_sees_its_share_of_the_gpus_before_tensorflow_lists_them(monkeypatch):
    set_slurm_step(monkeypatch, rank=1, nodes="node1", tasks_per_node="2", tasks=2)
    monkeypatch.setattr(slurm, "_gpus_on_this_node", lambda: 4)
    slurm.slurm_cluster_resolver(port_base=9000)

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_multi_worker_without_a_cluster_names_both_ways_to_give_one(monkeypatch):
    from vae_train.errors import ConfigError
    from vae_train.runtime.devices import WorkerOptions, _cluster_resolver

    for name in ("TF_CONFIG", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="SLURM job step of several tasks.*TF_CONFIG"):
        _cluster_resolver(WorkerOptions())


def test_a_taken_port_is_refused_naming_it(monkeypatch):
    from vae_train.errors import ConfigError
    from vae_train.runtime.devices import WorkerOptions, _cluster_resolver

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = {"worker": [f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}"]}
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
        with pytest.raises(ConfigError, match=rf"Port {port} on .* is taken"):
            _cluster_resolver(WorkerOptions())


def test_a_lost_worker_is_named_with_its_address():
    import tensorflow as tf

    from vae_train.runtime.workers import lost_worker

    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": ["a:1", "b:2"]}), task_type="worker", task_id=0)
    strategy = type("Strategy", (), {"cluster_resolver": resolver})()
    error = tf.errors.UnavailableError(None, None, "Collective ops is aborted by: Error reported from "
                                       "/job:worker/replica:0/task:1: stopped sending heartbeats")

    assert lost_worker(strategy, error).startswith("worker 1 at b:2, which stopped answering")
    assert lost_worker(strategy, ValueError("/job:worker/replica:0/task:1")) is None
    assert lost_worker(type("Strategy", (), {"cluster_resolver": None})(), error) is None
    one_machine = tf.distribute.OneDeviceStrategy("/cpu:0")  # its errors name /job:localhost/.../task:0
    assert lost_worker(one_machine, tf.errors.CancelledError(None, None, "/job:localhost/replica:0/task:0")) is None


def test_a_step_of_another_size_than_the_launcher_asked_for_is_refused(monkeypatch):
    from vae_train.errors import ConfigError
    from vae_train.runtime.cluster import check_step_matches_launcher

    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "3")
    with pytest.raises(ConfigError, match=r"has 3 task\(s\), but the launcher asked for .* = 4"):
        check_step_matches_launcher(nodes=2, tasks_per_node=2)
    check_step_matches_launcher(nodes=3, tasks_per_node=1)
    check_step_matches_launcher(nodes=None, tasks_per_node=None)  # not the submitit launcher


def test_a_two_node_submitit_job_composes_with_the_counts_asked_for():
    launcher = compose(["hydra/launcher=submitit_slurm", "hydra.launcher.nodes=2", "hydra.launcher.tasks_per_node=2",
                        "hydra.launcher.gpus_per_task=1"], return_hydra_config=True).hydra.launcher
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_task) == (2, 2, 1)
    assert launcher._target_.endswith("SlurmLauncher")


CLI = [sys.executable, "-m", "vae_train.launch.train_cli"]


@pytest.mark.slow
def test_a_killed_worker_fails_the_other_naming_it_and_both_resume(tmp_path):
    data = make_idx_folder(tmp_path / "mnist", train=2048, test=64)
    run_dir = tmp_path / "run"
    port = free_port_pair()
    command = [*CLI, *tiny_overrides(data, batch_size=16), "model=dense_ae", "model.hidden_units=[32]",
               "trainer.epochs=3", *QUIET_EVALUATION, f"trainer.worker_port={port}",
               "trainer.worker_timeout_seconds=30", f"hydra.run.dir={run_dir}"]

    def start(rank: int) -> subprocess.Popen:
        return subprocess.Popen(command, env=helper_env(**slurm_task(rank)), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    workers = [start(rank) for rank in range(2)]
    try:
        log = run_dir / "vae-train.log"
        deadline = time.monotonic() + 240
        while not (log.is_file() and "epoch 1/3" in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # into epoch 2
        workers[1].kill()
        output, _ = workers[0].communicate(timeout=120)
    finally:
        for worker in workers:
            worker.kill()
    assert workers[0].returncode == 1, output[-3000:]
    assert f"This run lost worker 1 at localhost:{port + 1}" in output
    assert "the same command resumes from it" in output and "Traceback" not in output

    workers = [start(rank) for rank in range(2)]
    outputs = [worker.communicate(timeout=240)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs[0][-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["finished"] and results["steps"] == 3 * 2048 // 16


def test_a_batch_script_without_srun_is_one_process_whatever_the_jobs_task_count(monkeypatch):
    from vae_train.runtime.cluster import is_chief_process, slurm_step_tasks

    monkeypatch.delenv("SLURM_STEP_NUM_TASKS", raising=False)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert slurm_step_tasks() == 1 and is_chief_process()
