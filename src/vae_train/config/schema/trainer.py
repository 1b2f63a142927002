"""The trainer group: epochs, the distribution strategy, the speed levers, checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from vae_train.config.schema.common import require, require_positive


class OnNonFinite(Enum):
    """What a NaN or infinite loss or gradient does to the run."""

    stop = "stop"  # stop without saving the bad weights
    skip_batch = "skip_batch"  # drop that batch's update and go on


class Precision(Enum):
    """The compute precision (Keras dtype policy); variables, losses and figures stay float32."""

    auto = "auto"  # mixed_bfloat16 on a CPU-only machine with AMX-BF16, else float32
    float32 = "float32"
    mixed_float16 = "mixed_float16"  # GPUs with tensor cores; loss scaling
    mixed_bfloat16 = "mixed_bfloat16"  # CPUs with AMX-BF16, recent GPUs and TPUs


@dataclass
class TrainerConfig:
    # Epochs to train to; a resumed run continues up to this.
    epochs: int = 10
    # auto: a SLURM job step of several tasks trains as multi_worker; else all local GPUs with
    # MirroredStrategy if there are several, else one device. Also: one_device, mirrored, multi_worker
    # (the cluster of TF_CONFIG, else of the SLURM job step).
    strategy: str = "auto"
    # multi_worker under SLURM: the port of each node's first task (the next tasks take the next ports).
    worker_port: int = 8888
    # multi_worker: how long a worker waits for the others in a collective step before it fails the run.
    worker_timeout_seconds: float = 300.0
    # The speed levers; the defaults are the fastest safe choice measured by `make bench`.
    precision: Precision = Precision.auto
    # Compile the train and eval steps with XLA: slower on CPUs (Eigen convolutions instead of oneDNN's).
    jit_compile: bool = False
    # Training steps run inside one tf.function call; more means less Python per step. A call never
    # runs past a TensorBoard point (log_every_steps), a checkpoint or the end of an epoch.
    steps_per_execution: int = 100
    log_every_steps: int = 100
    checkpoints_to_keep: int = 3
    # Also checkpoint every N steps inside an epoch (for long epochs); null: at epoch ends only.
    checkpoint_every_steps: int | None = None
    on_nan: OnNonFinite = OnNonFinite.stop
    # Deterministic TensorFlow ops: identical runs for the same seed, somewhat slower.
    deterministic: bool = False
    progress_bar: bool = True
    # TensorFlow's C++ start-up lines on the console (else only in the log, at DEBUG level).
    verbose_tensorflow: bool = False
    # TensorFlow's CPU threads (intra- and inter-op pools) and the one GPU to train on; null:
    # TensorFlow's choice, every core and every GPU. conf/trainer/default.yaml sets both to a resolver
    # (vae_train.config.resolvers) that shares the machine between the parallel jobs of a sweep.
    cpu_threads: int | None = None
    gpu: int | None = None

    def __post_init__(self) -> None:
        require(self.epochs >= 0, f"trainer.epochs must be >= 0, got {self.epochs}.")
        require_positive(self.cpu_threads, "trainer.cpu_threads")
        require(self.gpu is None or self.gpu >= 0, f"trainer.gpu must be >= 0, got {self.gpu}.")
        require_positive(self.checkpoint_every_steps, "trainer.checkpoint_every_steps")
        require(1024 <= self.worker_port <= 65535,
                f"trainer.worker_port must be in 1024..65535, got {self.worker_port}.")
        require(self.worker_timeout_seconds > 0,
                f"trainer.worker_timeout_seconds must be positive, got {self.worker_timeout_seconds}.")
        require_positive(self.steps_per_execution, "trainer.steps_per_execution")
        require_positive(self.log_every_steps, "trainer.log_every_steps")
        require_positive(self.checkpoints_to_keep, "trainer.checkpoints_to_keep")
