"""Where a run's wall time went: start-up, training steps, the work between epochs, the end of the run.

The four parts are contiguous spans of one clock, from the job's start to the writing of
results.json, so they add up to the wall time and no cost can sit outside them unseen (a stall once
did: the input pipeline's iterator took seconds to delete after some epochs, counted nowhere). What
follows results.json, the closing line and the process's exit, is outside: ``make bench`` times the
process from outside.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WallTime:
    startup: float  # the job's start to the first epoch's start: imports, TensorFlow, data, model, restore
    training_steps: float  # the compiled steps of every epoch (tracing the first one included)
    between_epochs: float  # the rest of the epochs: pipelines, test figures, checkpoints, pictures, logs
    end_of_run: float  # after the last epoch: the codes' figures, the likelihood bound, the export

    @property
    def total(self) -> float:
        return self.startup + self.training_steps + self.between_epochs + self.end_of_run

    def figures(self) -> dict[str, float]:
        """The flat results.json keys."""
        return {"wall_seconds": round(self.total, 3), "wall_startup_seconds": round(self.startup, 3),
                "wall_training_steps_seconds": round(self.training_steps, 3),
                "wall_between_epochs_seconds": round(self.between_epochs, 3),
                "wall_end_of_run_seconds": round(self.end_of_run, 3)}

    def describe(self) -> str:
        def share(seconds: float) -> str:
            return f"{seconds:.1f} s ({100 * seconds / self.total:.0f}%)" if self.total > 0 else f"{seconds:.1f} s"

        return (f"Wall time {self.total:.1f} s: start-up {share(self.startup)}, training steps "
                f"{share(self.training_steps)}, between epochs {share(self.between_epochs)}, end of run "
                f"{share(self.end_of_run)}.")
