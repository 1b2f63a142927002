"""The compute precision of a run: which Keras dtype policy ``trainer.precision`` means here.

Variables, gradients' updates, the losses and every reported figure stay float32 under all three
policies; ``mixed_*`` runs the layers' arithmetic in 16 bits. Where that pays (measured by ``make
bench``, see docs/benchmarks.md):

* ``mixed_bfloat16`` on CPUs with AMX-BF16 (Intel Xeon since Sapphire Rapids): oneDNN runs the
  convolutions and matrix products on the AMX tiles, about 4x the fp32 matmul rate; the conv VAE
  trains ~1.6x faster. bfloat16 has float32's exponent range, so no loss scaling is needed.
* ``mixed_float16`` on GPUs with tensor cores; with loss scaling. On CPUs it is no faster than float32.

``auto`` picks ``mixed_bfloat16`` where it was measured to pay (no GPU, a CPU with AMX-BF16, oneDNN
on) and ``float32`` everywhere else, and for several replicas: bfloat16 rounds each layer's output
to 8 bits of mantissa, which turns the kernels' batch-size-dependent summation order into visible
differences, so replicas would no longer train like one device to float32 rounding.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from vae_train.config import Precision
from vae_train.runtime.host_cpu import cpu_flags

log = logging.getLogger(__name__)

POLICIES = tuple(precision.value for precision in Precision if precision is not Precision.auto)


@dataclass(frozen=True)
class ComputePrecision:
    """A run's compute precision, resolved once (``auto`` decided for this machine) and handed to
    whatever depends on it: the model's layers, the optimizer's loss scaling, the report."""

    policy: str  # a Keras dtype policy name: float32, mixed_float16 or mixed_bfloat16

    @property
    def loss_scaling(self) -> bool:
        """float16 gradients underflow without loss scaling; bfloat16 has float32's exponent range."""
        return self.policy == "mixed_float16"

    @contextmanager
    def building_layers(self) -> Iterator[None]:
        """Layers created inside compute in this precision. Keras reads its process-wide policy when
        a layer is created, so it is set for the block and restored after: layers made later
        (pictures, exports, other runs in this process) start from the process's own again."""
        import keras

        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.policy)
        try:
            yield
        finally:
            keras.config.set_dtype_policy(previous)


def bfloat16_pays_on_cpu() -> bool:
    """AMX-BF16 present and TensorFlow's oneDNN kernels on (TF_ENABLE_ONEDNN_OPTS=0 turns them off,
    and Eigen's bfloat16 kernels are slower than its float32 ones)."""
    return "amx_bf16" in cpu_flags() and os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"


def resolve_precision(precision: Precision, gpus: int = 0, replicas: int = 1) -> ComputePrecision:
    """The precision a ``trainer.precision`` setting means on this machine (``auto`` resolved)."""
    if precision is not Precision.auto:
        return ComputePrecision(precision.value)
    if gpus == 0 and replicas == 1 and bfloat16_pays_on_cpu():
        return ComputePrecision("mixed_bfloat16")
    return ComputePrecision("float32")
