"""vae-train's own training loop, driven for timing: settings composed by Hydra from the project's
``conf/``, the run's parts built by :func:`vae_train.run.build.build_trainer` (as ``vae-train`` builds
them), a :class:`~vae_train.training.loop.Trainer`, and windows of N steps through its
``run_steps`` (one call of its compiled multi-step function, counted and checked, as its epoch loop
makes them), in calls of ``trainer.steps_per_execution`` steps, capped at TensorBoard points as there."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from vae_train.config import Config, to_settings

# The loop the headline, levers, threads, same_results and profile sections time: recipe C, batch 64.
RECIPE_C = ("experiment=keras_vae_fashion",)


def settings_for(data_root: Path, dataset: str, overrides: list[str]) -> Config:
    from vae_train.launch.train_cli import compose  # registers the schemas; imports no TensorFlow

    return to_settings(compose([*overrides, f"data.root={data_root / dataset}", "trainer.progress_bar=false"]))


class LoopUnderTest:
    """One configuration of vae-train's loop, ready to run windows of training steps."""

    def __init__(self, settings: Config, dataset=None, workdir: Path | None = None):
        from vae_train.run.build import build_trainer

        self.settings = settings
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="vae-train-bench-"))
        run = build_trainer(settings, self.workdir, dataset)
        self.parts, self.trainer = run.parts, run.trainer
        self.policy = self.parts.precision.policy  # trainer.precision, resolved
        self.batch_size = settings.data.batch_size
        self.iterator = self.trainer.epoch_iterator(self.parts.pipelines.train(0).repeat())
        # Calls never span a TensorBoard point in the real loop, so chunks are capped the same way.
        self.chunk = min(settings.trainer.steps_per_execution, settings.trainer.log_every_steps)

    @property
    def model(self):
        return self.parts.model

    def steps(self, count: int) -> np.ndarray:
        """Train ``count`` steps; returns the summed loss terms (and image count) as the loop sees them."""
        total = None
        for num_steps in _chunks(count, self.chunk):
            sums, _ = self.trainer.run_steps(self.iterator, num_steps)
            total = sums if total is None else total + sums
        return total

    def warm_up(self, steps: int = 10) -> None:
        """Trace the step function (the step count is a tensor: one trace serves every call), fill the
        pipeline, and run once more with everything warm."""
        self.steps(steps)
        self.steps(steps)


def _chunks(count: int, chunk: int) -> list[int]:
    return [min(chunk, count - start) for start in range(0, count, chunk)]
