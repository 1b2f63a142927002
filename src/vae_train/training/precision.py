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

from vae_train.host_cpu import cpu_flags

log = logging.getLogger(__name__)

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def bfloat16_pays_on_cpu() -> bool:
    """AMX-BF16 present and TensorFlow's oneDNN kernels on (TF_ENABLE_ONEDNN_OPTS=0 turns them off,
    and Eigen's bfloat16 kernels are slower than its float32 ones)."""
    return "amx_bf16" in cpu_flags() and os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"


def requested_precision(trainer_config) -> str:
    """What a run's ``trainer`` config asks for, before ``auto`` is resolved: a
    ``trainer.precision`` name, or ``mixed_float16`` for the older ``trainer.mixed_precision=true``."""
    return "mixed_float16" if trainer_config.mixed_precision else trainer_config.precision.value


def resolve_precision(precision: str, gpus: int = 0, replicas: int = 1) -> str:
    """The Keras dtype policy for a :func:`requested_precision` (``auto`` resolved for this machine)."""
    if precision != "auto":
        return precision
    if gpus == 0 and replicas == 1 and bfloat16_pays_on_cpu():
        return "mixed_bfloat16"
    return "float32"
