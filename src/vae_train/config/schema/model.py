"""The model group: one schema per model, each named as its registration and its YAML file."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from omegaconf import MISSING

from vae_train.config.schema.common import option_schema, require, require_positive


class ReconstructionLoss(Enum):
    bernoulli = "bernoulli"  # sigmoid cross-entropy on logits, nats per image
    mse = "mse"  # squared error of sigmoid(logits), summed over pixels


class DecoderDistribution(Enum):
    """p(x|z) of a bernoulli reconstruction loss, with the decoder's logits as its parameter."""

    bernoulli = "bernoulli"  # for binary pixels; on grey levels a cross-entropy, not a density
    continuous_bernoulli = "continuous_bernoulli"  # a density on [0, 1], for grey levels (Loaiza-Ganem 2019)


class Reduction(Enum):
    """How the training objective reduces a loss term over its pixels or latent dimensions.

    Reported figures are always summed (nats per image); this changes only what is optimized.
    """

    sum = "sum"
    mean = "mean"


class Downsampling(Enum):
    """How the convolutional encoder halves its feature maps."""

    strided = "strided"  # a convolution with stride 2
    pooled = "pooled"  # a convolution with stride 1, then 2x2 max-pooling


@dataclass
class ModelConfig:
    """Fields every model has; each model's own schema adds its architecture."""

    name: str = MISSING
    reconstruction_loss: ReconstructionLoss = ReconstructionLoss.bernoulli
    # What the optimizer minimizes: sum over pixels (nats per image) or mean (per pixel, the Keras
    # binary cross-entropy of recipe B). Reported figures are sums either way.
    reconstruction_reduction: Reduction = Reduction.sum
    # The bernoulli loss's distribution: bernoulli, or continuous_bernoulli (its normalizing constant
    # in every reported figure).
    decoder_distribution: DecoderDistribution = DecoderDistribution.bernoulli

    def __post_init__(self) -> None:
        require(self.decoder_distribution is DecoderDistribution.bernoulli
                or self.reconstruction_loss is ReconstructionLoss.bernoulli,
                f"model.decoder_distribution={self.decoder_distribution.value} is a likelihood, but "
                f"model.reconstruction_loss={self.reconstruction_loss.value} is none: use "
                "model.reconstruction_loss=bernoulli with it, or model.decoder_distribution=bernoulli.")


@option_schema("model", "dense_ae")
@dataclass
class DenseAEConfig(ModelConfig):
    """A stacked, symmetric dense autoencoder: the decoder mirrors ``hidden_units``."""

    hidden_units: list[int] = field(default_factory=lambda: [512, 256])
    activation: str = "relu"
    # Activation of the code layer; null keeps it linear.
    code_activation: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require(all(u > 0 for u in self.hidden_units), "model.hidden_units must be positive.")


@option_schema("model", "conv_ae")
@dataclass
class ConvAEConfig(ModelConfig):
    """Convolutional autoencoder: convolutions, dense layers, the code, and back."""

    # Filters of each downsampling layer; null: follow the image size, halving it while both sides are even
    # and the longer one exceeds 8 pixels, with 32, 64, 128, 256, 256, ... filters ([32, 64] at 28x28 and
    # 32x32, five layers at 256x256).
    encoder_filters: list[int] | None = None
    encoder_padding: str = "same"
    # Dense layers of the encoder between the convolutions and the code.
    hidden_units: list[int] = field(default_factory=list)
    # Filters of each upsampling layer (each doubles the feature map); null: the encoder's, reversed.
    decoder_filters: list[int] | None = None
    # Channels of the decoder's first feature map; null: the encoder's last layer's filters.
    decoder_start_channels: int | None = None
    # Dense layers of the decoder between the code and the first feature map.
    decoder_hidden_units: list[int] = field(default_factory=list)
    kernel_size: int = 3
    activation: str = "relu"
    downsampling: Downsampling = Downsampling.strided
    batch_norm: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.encoder_padding in ("same", "valid"), "model.encoder_padding must be same or valid.")
        # Whether the layers fit the images is checked when the model is built, where their size is known.
        for key in ("encoder_filters", "hidden_units", "decoder_filters", "decoder_hidden_units"):
            require(all(u > 0 for u in getattr(self, key) or []), f"model.{key} must be positive.")
        require_positive(self.decoder_start_channels, "model.decoder_start_channels")
        require_positive(self.kernel_size, "model.kernel_size")


@dataclass
class VAEConfig(ModelConfig):
    """The keys every VAE has, whatever its network: the weight of its KL term and its training objective.

    A VAE's schema derives from this and from its network's, this first (``ConvVAEConfig(VAEConfig,
    ConvAEConfig)``), so the network's keys come first in the composed config and each ``__post_init__``
    runs once."""

    # Weight of the KL term; 1 is the ELBO.
    beta: float = 1.0
    # KL warm-up: the KL term's weight in the objective rises linearly from 0 to beta over these steps.
    kl_warmup_steps: int = 0
    # Free bits: nats per latent dimension below which its KL is not penalized (Kingma et al., 2016).
    free_bits: float = 0.0
    # In the training objective only: mean over latent dimensions is the Keras VAE example (recipe C).
    kl_reduction: Reduction = Reduction.sum
    # Importance samples K per image of the training objective: 1 is the ELBO; more, the importance-weighted
    # bound (Burda et al., 2015), tighter as K grows, reported as iw_bound.
    train_samples: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.beta >= 0, f"model.beta must be >= 0, got {self.beta}.")
        require(self.kl_warmup_steps >= 0, f"model.kl_warmup_steps must be >= 0, got {self.kl_warmup_steps}.")
        require(self.free_bits >= 0, f"model.free_bits must be >= 0 nats, got {self.free_bits}.")
        require(self.train_samples >= 1, f"model.train_samples must be >= 1, got {self.train_samples}.")
        if self.train_samples > 1:
            self._require_a_plain_bound()

    def _require_a_plain_bound(self) -> None:
        """The importance-weighted bound is one log-mean-exp over whole samples: it has no separate KL term
        to weigh, warm up, floor or average, and it needs a likelihood to weigh the samples by."""
        shaped = [f"model.{key}={_shown(getattr(self, key))}" for key, plain in ELBO_SHAPING_NEUTRAL.items()
                  if getattr(self, key) != plain]
        require(not shaped,
                f"model.train_samples={self.train_samples} trains on the importance-weighted bound, which has no "
                f"separate KL or pixel terms, so {', '.join(shaped)} would do nothing: these keys shape the "
                "ELBO (model.train_samples=1) only. Drop them, or train on the ELBO.")
        require(self.reconstruction_loss is ReconstructionLoss.bernoulli,
                f"model.train_samples={self.train_samples} weighs each sample by its likelihood p(x|z), and "
                f"model.reconstruction_loss={self.reconstruction_loss.value} is none: use "
                "model.reconstruction_loss=bernoulli, or model.train_samples=1.")


# The values at which the ELBO-shaping keys leave the plain negative ELBO (not their defaults, which may
# change): model.train_samples > 1 requires them.
ELBO_SHAPING_NEUTRAL = {"beta": 1.0, "kl_warmup_steps": 0, "free_bits": 0.0, "kl_reduction": Reduction.sum,
                        "reconstruction_reduction": Reduction.sum}


def _shown(value) -> str:
    return value.value if isinstance(value, Enum) else str(value)


@option_schema("model", "dense_vae")
@dataclass
class DenseVAEConfig(VAEConfig):
    """The MLP VAE of Kingma and Welling (2014) and Burda et al. (2015): dense layers to a Gaussian code, and
    the mirrored layers to Bernoulli logits. Its defaults are Kingma and Welling's MNIST network: one hidden
    layer of 500 tanh units."""

    # The encoder's dense layers; the decoder mirrors them.
    hidden_units: list[int] = field(default_factory=lambda: [500])
    activation: str = "tanh"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(all(u > 0 for u in self.hidden_units), "model.hidden_units must be positive.")


@option_schema("model", "cvae")
@dataclass
class ConvVAEConfig(VAEConfig, ConvAEConfig):
    """Convolutional VAE: a Gaussian encoder (mean and log-variance), a decoder giving logits.

    Its defaults differ from the conv autoencoder's where a search found better 10-epoch models on
    MNIST at latent_dim 2 (docs/results.md, docs/search/): a dense layer of 128 in the encoder, one
    of 256 in the decoder, and swish activations."""

    hidden_units: list[int] = field(default_factory=lambda: [128])
    decoder_hidden_units: list[int] = field(default_factory=lambda: [256])
    activation: str = "swish"


@option_schema("model", "iwae")
@dataclass
class IWAEConfig(ConvVAEConfig):
    """The conv VAE trained on the importance-weighted bound (Burda et al., 2015): model=cvae with five
    importance samples, kept as a name of its own so earlier runs and commands stay valid."""

    train_samples: int = 5
