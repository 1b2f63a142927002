"""The corruption group: how training inputs are corrupted for a denoiser."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from vae_train.config.schema.common import option_schema, require


@dataclass
class CorruptionConfig:
    """How the training images are corrupted before the encoder sees them; the reconstruction is
    scored against the clean image, so the model learns to remove the corruption (a denoiser)."""

    name: str = MISSING


@option_schema("corruption", "none")
@dataclass
class NoCorruptionConfig(CorruptionConfig):
    pass


@option_schema("corruption", "gaussian")
@dataclass
class GaussianCorruptionConfig(CorruptionConfig):
    """Additive Gaussian noise of standard deviation ``std``, the result clipped to [0, 1]."""

    std: float = 0.5

    def __post_init__(self) -> None:
        require(self.std >= 0, f"corruption.std must be >= 0 (a standard deviation), got {self.std}.")


@dataclass
class PixelShareCorruptionConfig(CorruptionConfig):
    """A corruption of a share ``rate`` of the pixels."""

    rate: float = MISSING

    def __post_init__(self) -> None:
        require(0.0 <= self.rate <= 1.0,
                f"corruption.rate must be in [0, 1] (a share of the pixels), got {self.rate}.")


@option_schema("corruption", "salt_pepper")
@dataclass
class SaltPepperCorruptionConfig(PixelShareCorruptionConfig):
    """A share ``rate`` of the pixels set to 0 or 1, half each."""

    rate: float = 0.2


@option_schema("corruption", "masking")
@dataclass
class MaskingCorruptionConfig(PixelShareCorruptionConfig):
    """A share ``rate`` of the pixels set to 0."""

    rate: float = 0.5
