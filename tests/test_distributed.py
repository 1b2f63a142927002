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
from pathlib import Path

import numpy as np
import pytest

from conftest import compose, make_idx_folder, tiny_overrides
from vae_train.config import to_settings
from vae_train.run.train import train
from vae_train.runtime.cluster import is_chief_task
from vae_train.runtime.devices import gpu_for_job

HELPER = Path(__file__).with_name("distributed_jobs.py")
SMALL_CONV = ["model.encoder_filters=[8,16]", "model.decoder_filters=[16,8]", "model.decoder_start_channels=16"]
# Pictures and the likelihood bound are other tests' business; off, the runs here are faster.
QUIET_EVALUATION = ["evaluation.reconstructions=0", "evaluation.samples=0", "evaluation.manifold.size=0",
                    "evaluation.projector=false", "evaluation.code_examples=0", "evaluation.iw_samples=0"]


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


def test_two_workers_over_localhost_train_in_lockstep_and_only_the_chief_writes(tmp_path):
    # 70 test images make a last batch of 6, shared unevenly between the workers.
    data = make_idx_folder(tmp_path / "mnist", train=128, test=70)
    overrides = ["model=dense_ae", "model.hidden_units=[32]", "optimizer=rmsprop", "optimizer.clipnorm=1.0",
                 "trainer.epochs=2", *float32(), *QUIET_EVALUATION]
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        command = [sys.executable, str(HELPER), "worker", str(data), str(tmp_path / f"run{index}"),
                   str(tmp_path / f"weights{index}.npz"), *overrides]
        env = helper_env(TF_CONFIG=tf_config, TMPDIR=str(scratch))
        workers.append(subprocess.Popen(command, cwd=HELPER.parent, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for process in workers:
            outputs.append(process.communicate(timeout=240))
    finally:
        for process in workers:
            process.kill()
    for process, (_, stderr) in zip(workers, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]

    chief, other = (np.load(tmp_path / f"weights{index}.npz") for index in range(2))
    assert len(chief.files) == len(other.files) > 0
    for name in chief.files:
        np.testing.assert_array_equal(chief[name], other[name])

    reported = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    assert reported[0] == reported[1]
    assert {"results.json", "train", "test", "checkpoints"} <= {path.name for path in (tmp_path / "run0").iterdir()}
    # The other worker wrote into a scratch folder, removed when it exited.
    assert not [path for path in (tmp_path / "run1").rglob("*") if path.is_file()]
    assert not any(scratch.iterdir())

    # The same global batch on one device gives the same training.
    single = train(to_settings(compose([*tiny_overrides(data), *overrides])), tmp_path / "single")
    assert reported[0]["steps"] == single["steps"] == 8
    assert reported[0]["train_loss"] == pytest.approx(single["train_loss"], rel=1e-5)
    assert reported[0]["test_loss"] == pytest.approx(single["test_loss"], rel=1e-5)
