"""Training runs for tests/test_distributed.py, each in a fresh process: TensorFlow's logical devices
and its cluster (TF_CONFIG) can only be set before it starts.

    python distributed_jobs.py replicas <data folder> <output.json> <case.json>...
        Two logical CPU devices; each case trains with one_device, then with mirrored (two
        replicas), and the losses and the largest weight difference go to output.json.
    python distributed_jobs.py worker <data folder> <run folder> <weights.npz> <override>...
        One worker of the cluster in TF_CONFIG or of the SLURM step in SLURM_* (with
        trainer.strategy=multi_worker, or auto); its final weights go to weights.npz.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from conftest import compose, tiny_overrides


def _train_capturing_weights(data: Path, run_dir: Path, overrides: list[str]) -> tuple[dict, list[np.ndarray]]:
    """train() as the command line runs it, plus the model's final weights."""
    import vae_train.run.build as building
    from vae_train.config import to_settings
    from vae_train.run.train import train
    from vae_train.training.loop import Trainer

    captured: list[np.ndarray] = []

    class CapturingTrainer(Trainer):
        def fit(self):
            history = super().fit()
            captured.extend(variable.numpy() for variable in self.model.weights)
            return history

    building.Trainer = CapturingTrainer
    try:
        settings = to_settings(compose([*tiny_overrides(data), *overrides]))
        return train(settings, run_dir), captured
    finally:
        building.Trainer = Trainer


def replicas(data: Path, output: Path, cases: list[str]) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    report = []
    for case in cases:
        overrides = json.loads(case)
        runs = {}
        for strategy in ("one_device", "mirrored"):
            results, weights = _train_capturing_weights(data, Path(tempfile.mkdtemp()),
                                                        [*overrides, f"trainer.strategy={strategy}"])
            runs[strategy] = {"train_loss": results["train_loss"], "test_loss": results["test_loss"],
                              "steps": results["steps"], "weights": weights}
        difference = max(float(np.max(np.abs(a - b)))
                         for a, b in zip(runs["one_device"]["weights"], runs["mirrored"]["weights"], strict=True))
        replicas_used = len(tf.config.list_logical_devices("CPU"))
        report.append({"overrides": overrides, "replicas": replicas_used, "max_weight_difference": difference,
                       **{name: {k: v for k, v in run.items() if k != "weights"} for name, run in runs.items()}})
    output.write_text(json.dumps(report, indent=2))


def worker(data: Path, run_dir: Path, weights_file: Path, overrides: list[str]) -> None:
    logging.basicConfig(level=logging.INFO)  # the devices line, on stderr
    results, weights = _train_capturing_weights(data, run_dir, overrides)
    np.savez(weights_file, *weights)
    print(json.dumps({key: results[key] for key in ("train_loss", "test_loss", "steps")}))


if __name__ == "__main__":
    command, data_folder, *rest = sys.argv[1:]
    if command == "replicas":
        replicas(Path(data_folder), Path(rest[0]), rest[1:])
    else:
        worker(Path(data_folder), Path(rest[0]), Path(rest[1]), rest[2:])
