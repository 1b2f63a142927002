"""Typed schemas of every config group, with their defaults.

Each default is stated here once; a YAML option under ``conf/`` states only what differs from its
schema (``conf/data/mnist.yaml``: ``name`` and ``binarize``). Hydra merges each YAML file onto its
schema, so a typo, a wrong type or an unknown key fails at composition. Range checks that a type
cannot express live in ``__post_init__``: they run when :func:`~vae_train.config.store.to_settings`
turns the composed config into these objects, before any work starts.

No TensorFlow here: ``vae-train --help`` and ``--cfg job`` go through this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING

from vae_train.errors import ConfigError

# The schema of each option of the groups whose options differ in their keys, by group and option
# name, filled by @option_schema. A model's name is also its registration (vae_train.models) and its
# file conf/model/<name>.yaml; a test checks that the three agree.
GROUP_SCHEMAS: dict[str, dict[str, type]] = {"model": {}, "optimizer": {}, "corruption": {}}
# The option of a group a saved config from before the group existed is read as.
GROUP_DEFAULTS = {"corruption": "none"}


def option_schema(group: str, name: str):
    """Make the decorated dataclass the schema of ``conf/<group>/<name>.yaml`` (``schema/<group>/<name>``)."""
    def register(schema: type) -> type:
        GROUP_SCHEMAS[group][name] = schema
        return schema

    return register


# Far above any latent size that makes sense for 28x28 images, low enough to catch a typo
# (latent_dim=20000) before it allocates gigabytes.
MAX_LATENT_DIM = 4096


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _require_positive(value: float | None, key: str) -> None:
    _require(value is None or value > 0, f"{key} must be positive, got {value}.")


def _require_interval(values: list[float], key: str, within: tuple[float, float] | None = None) -> None:
    """``values`` is ``[low, high]`` with low < high, strictly inside ``within`` if given."""
    lowest, highest = within or (-math.inf, math.inf)
    bounds = f" inside ({lowest}, {highest})" if within else ""
    _require(len(values) == 2 and lowest < values[0] < values[1] < highest,
             f"{key} must be [low, high] with low < high{bounds}, got {values}.")


class Binarize(Enum):
    """How pixel intensities in [0, 1] become the training targets."""

    static = "static"  # threshold once at 0.5
    dynamic = "dynamic"  # a fresh Bernoulli draw per epoch
    none = "none"  # keep grey levels


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


class Schedule(Enum):
    """The learning rate over training (Keras' schedules); it ends at trainer.epochs."""

    constant = "constant"
    cosine = "cosine"  # cosine decay from optimizer.learning_rate
    warmup_cosine = "warmup_cosine"  # linear warm-up from 0 over optimizer.warmup_steps, then cosine decay


class DataSplit(Enum):
    """Which images train the model and which are evaluated as the "test" set."""

    standard = "standard"  # the published training and test sets
    validation = "validation"  # the last data.validation_size training images are held out and evaluated
    combined = "combined"  # train on training + test images; the test set is evaluated but not held out


@dataclass
class DataConfig:
    name: str = MISSING
    # A folder with the four IDX gzip files; null: $VAE_TRAIN_DATA/<name> if set, else download.
    root: str | None = None
    cache_dir: str = "~/.cache/vae-train"
    # Check a local folder's files against the published md5 sums.
    verify_checksums: bool = True
    # The global batch, split across replicas.
    batch_size: int = 64
    # Use only the first N examples; null: all.
    max_train_examples: int | None = None
    max_test_examples: int | None = None
    binarize: Binarize = Binarize.none
    # null: shuffle over the whole training set.
    shuffle_buffer: int | None = None
    # Speed lever: gather each batch from the decoded images by index (true) or let tf.data shuffle
    # and batch the images themselves (false, the older pipeline, a third as fast; another order).
    gather_batches: bool = True
    split: DataSplit = DataSplit.standard
    # Images held out by split=validation.
    validation_size: int = 5000
    # Train (and hold out for validation) only images of these class labels; the test set keeps every
    # class, its others being the anomalies of the one-class protocol. null: every class.
    train_classes: list[int] | None = None

    def __post_init__(self) -> None:
        _require_positive(self.batch_size, "data.batch_size")
        _require_positive(self.max_train_examples, "data.max_train_examples")
        _require_positive(self.max_test_examples, "data.max_test_examples")
        _require_positive(self.shuffle_buffer, "data.shuffle_buffer")
        _require_positive(self.validation_size, "data.validation_size")
        if self.train_classes is not None:
            _require(len(self.train_classes) > 0, "data.train_classes=[] names no class: list the class "
                     "labels to train on, e.g. data.train_classes=[3], or null for every class.")
            _require(all(label >= 0 for label in self.train_classes),
                     f"data.train_classes must hold class labels (0, 1, ...), got {self.train_classes}.")


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
        _require(self.decoder_distribution is DecoderDistribution.bernoulli
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
        _require(all(u > 0 for u in self.hidden_units), "model.hidden_units must be positive.")


@option_schema("model", "conv_ae")
@dataclass
class ConvAEConfig(ModelConfig):
    """Convolutional autoencoder: convolutions, dense layers, the code, and back."""

    encoder_filters: list[int] = field(default_factory=lambda: [32, 64])
    encoder_padding: str = "same"
    # Dense layers of the encoder between the convolutions and the code.
    hidden_units: list[int] = field(default_factory=list)
    decoder_filters: list[int] = field(default_factory=lambda: [64, 32])
    decoder_start_channels: int = 64
    # Dense layers of the decoder between the code and the first feature map.
    decoder_hidden_units: list[int] = field(default_factory=list)
    kernel_size: int = 3
    activation: str = "relu"
    downsampling: Downsampling = Downsampling.strided
    batch_norm: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.encoder_padding in ("same", "valid"), "model.encoder_padding must be same or valid.")
        _require(28 % (2 ** len(self.decoder_filters)) == 0,
                 "model.decoder_filters: each layer doubles the size, so 28 must divide by 2**len "
                 f"(got {len(self.decoder_filters)} layers).")
        for key in ("encoder_filters", "hidden_units", "decoder_filters", "decoder_hidden_units"):
            _require(all(u > 0 for u in getattr(self, key)), f"model.{key} must be positive.")
        _require_positive(self.decoder_start_channels, "model.decoder_start_channels")
        _require_positive(self.kernel_size, "model.kernel_size")


@option_schema("model", "cvae")
@dataclass
class ConvVAEConfig(ConvAEConfig):
    """Convolutional VAE: a Gaussian encoder (mean and log-variance), a decoder giving logits.

    Its defaults differ from the conv autoencoder's where a search found better 10-epoch models on
    MNIST at latent_dim 2 (docs/results.md, docs/search/): a dense layer of 128 in the encoder, one
    of 256 in the decoder, and swish activations."""

    hidden_units: list[int] = field(default_factory=lambda: [128])
    decoder_hidden_units: list[int] = field(default_factory=lambda: [256])
    activation: str = "swish"
    # Weight of the KL term; 1 is the ELBO.
    beta: float = 1.0
    # KL warm-up: the KL term's weight in the objective rises linearly from 0 to beta over these steps.
    kl_warmup_steps: int = 0
    # Free bits: nats per latent dimension below which its KL is not penalized (Kingma et al., 2016).
    free_bits: float = 0.0
    # In the training objective only: mean over latent dimensions is the Keras VAE example (recipe C).
    kl_reduction: Reduction = Reduction.sum

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.beta >= 0, f"model.beta must be >= 0, got {self.beta}.")
        _require(self.kl_warmup_steps >= 0, f"model.kl_warmup_steps must be >= 0, got {self.kl_warmup_steps}.")
        _require(self.free_bits >= 0, f"model.free_bits must be >= 0 nats, got {self.free_bits}.")


@option_schema("model", "iwae")
@dataclass
class IWAEConfig(ConvVAEConfig):
    """The conv VAE trained on the importance-weighted bound (Burda et al., 2015)."""

    # Importance samples per image in the training objective; 1 is the ELBO.
    train_samples: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.train_samples >= 1, f"model.train_samples must be >= 1, got {self.train_samples}.")


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
        _require(self.std >= 0, f"corruption.std must be >= 0 (a standard deviation), got {self.std}.")


@dataclass
class PixelShareCorruptionConfig(CorruptionConfig):
    """A corruption of a share ``rate`` of the pixels."""

    rate: float = MISSING

    def __post_init__(self) -> None:
        _require(0.0 <= self.rate <= 1.0,
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


class ManifoldKind(Enum):
    """Where the manifold picture's grid of latent points lies (latent_dim 2)."""

    quantiles = "quantiles"  # evenly spaced quantiles of N(0, 1) on each axis (recipe A)
    square = "square"  # evenly spaced points of an interval on each axis (recipe C)


class Projection(Enum):
    """How the latent scatter shows codes of more than two dimensions."""

    pca = "pca"  # onto the two principal components
    first_two = "first_two"  # the first two coordinates


class Interpolation(Enum):
    """How the interpolation pictures walk between two codes."""

    linear = "linear"
    slerp = "slerp"  # spherical: along the great circle, as suits codes drawn from a Gaussian prior


class ExtraMetric(Enum):
    """Test-set figures some recipes define besides the losses, reported under their own names."""

    rounded_accuracy = "rounded_accuracy"  # share of pixels with round(image) == round(reconstruction) (B)


@dataclass
class ManifoldConfig:
    kind: ManifoldKind = ManifoldKind.quantiles
    size: int = 20  # points per axis; 0: no manifold picture
    # The probabilities (quantiles) or coordinates (square) spanned on each axis.
    quantile_range: list[float] = field(default_factory=lambda: [0.05, 0.95])
    square_range: list[float] = field(default_factory=lambda: [-2.0, 2.0])

    def __post_init__(self) -> None:
        _require(self.size >= 0, f"evaluation.manifold.size must be >= 0, got {self.size}.")
        _require_interval(self.quantile_range, "evaluation.manifold.quantile_range", within=(0.0, 1.0))
        _require_interval(self.square_range, "evaluation.manifold.square_range")


@dataclass
class EvaluationConfig:
    """Pictures in TensorBoard, extra test figures, and the importance-weighted likelihood."""

    # Pictures after every N epochs and after the last.
    every_n_epochs: int = 1
    # Test images shown above their reconstructions; 0: none.
    reconstructions: int = 8
    # VAEs: decodings of this many fixed draws from the prior; 0: none.
    samples: int = 16
    # latent_dim 2: a size x size grid of decodings.
    manifold: ManifoldConfig = field(default_factory=ManifoldConfig)
    # latent_dim > 2: the latent scatter shows a 2-D projection.
    projection: Projection = Projection.pca
    # Test images encoded for the latent scatter and the projector; null: all, 0: neither.
    code_examples: int | None = None
    # Test-set codes with labels and a sprite for TensorBoard's embedding projector.
    projector: bool = True
    # Weight and gradient histograms.
    histograms: bool = False
    # VAEs: importance samples per test image for the likelihood bound test_nll_iw; 0: off.
    iw_samples: int = 50
    # Extra test figures.
    metrics: list[ExtraMetric] = field(default_factory=list)
    # At the end of a run: the codes' worth (probe, k-NN, k-means) beside PCA's at the same size.
    representation: bool = True
    # Training images encoded for the probe, k-NN and PCA; null: all.
    representation_examples: int | None = None
    # Neighbours of the k-NN classifier.
    knn_k: int = 5
    # Pairs of test images of different classes interpolated between; 0: none.
    interpolations: int = 4
    # Decodings per interpolation, the two images' own reconstructions included.
    interpolation_steps: int = 10
    # linear or slerp; null: slerp for VAEs (a Gaussian prior), linear for autoencoders.
    interpolation: Interpolation | None = None
    # Latent dimensions traversed, those the codes vary most along first; null: min(latent_dim, 10); 0: none.
    traversal_dims: int | None = None
    # Decodings per traversal, over +-3 prior standard deviations around the code.
    traversal_steps: int = 11

    def __post_init__(self) -> None:
        _require_positive(self.every_n_epochs, "evaluation.every_n_epochs")
        _require(self.knn_k > 0, f"evaluation.knn_k must be a positive number of neighbours, got {self.knn_k}.")
        _require(self.interpolation_steps >= 2,
                 f"evaluation.interpolation_steps must be >= 2 (both ends), got {self.interpolation_steps}.")
        _require(self.traversal_steps >= 2, f"evaluation.traversal_steps must be >= 2, got {self.traversal_steps}.")
        _require_positive(self.representation_examples, "evaluation.representation_examples")
        for key in ("reconstructions", "samples", "code_examples", "iw_samples", "interpolations", "traversal_dims"):
            value = getattr(self, key)
            _require(value is None or value >= 0, f"evaluation.{key} must be >= 0, got {value}.")


@dataclass
class OptimizerConfig:
    """Every field but ``name`` is passed to the Keras optimizer of that name."""

    name: str = MISSING
    learning_rate: float = MISSING
    # Clip each variable's gradient to this norm (Keras clips per variable); null: no clipping.
    clipnorm: float | None = None
    # The schedule's keys; build_optimizer reads them, the Keras optimizer does not get them.
    schedule: Schedule = Schedule.constant
    warmup_steps: int = 0
    # cosine schedules end at this fraction of optimizer.learning_rate (Keras' alpha).
    final_learning_rate_fraction: float = 0.0

    def __post_init__(self) -> None:
        _require_positive(self.learning_rate, "optimizer.learning_rate")
        _require_positive(self.clipnorm, "optimizer.clipnorm")
        _require(self.warmup_steps >= 0, f"optimizer.warmup_steps must be >= 0, got {self.warmup_steps}.")
        _require(self.schedule is not Schedule.warmup_cosine or self.warmup_steps > 0,
                 "optimizer.schedule=warmup_cosine needs optimizer.warmup_steps > 0.")
        _require(0.0 <= self.final_learning_rate_fraction <= 1.0,
                 f"optimizer.final_learning_rate_fraction must be in [0, 1], got {self.final_learning_rate_fraction}.")


@option_schema("optimizer", "sgd")
@dataclass
class SGDConfig(OptimizerConfig):
    # Losses are summed over the pixels, so gradients are large: 1e-2 diverges.
    learning_rate: float = 3.0e-4
    momentum: float = 0.9
    nesterov: bool = False


@option_schema("optimizer", "adam")
@dataclass
class AdamConfig(OptimizerConfig):
    learning_rate: float = 1.0e-3
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7


@option_schema("optimizer", "rmsprop")
@dataclass
class RMSpropConfig(OptimizerConfig):
    learning_rate: float = 1.0e-3
    rho: float = 0.9
    momentum: float = 0.0
    epsilon: float = 1e-7


@dataclass
class TrainerConfig:
    # Epochs to train to; a resumed run continues up to this.
    epochs: int = 10
    # auto: all local GPUs with MirroredStrategy if there are several, else one device.
    # Also: one_device, mirrored, multi_worker (reads TF_CONFIG).
    strategy: str = "auto"
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
        _require(self.epochs >= 0, f"trainer.epochs must be >= 0, got {self.epochs}.")
        _require_positive(self.cpu_threads, "trainer.cpu_threads")
        _require(self.gpu is None or self.gpu >= 0, f"trainer.gpu must be >= 0, got {self.gpu}.")
        _require_positive(self.checkpoint_every_steps, "trainer.checkpoint_every_steps")
        _require_positive(self.steps_per_execution, "trainer.steps_per_execution")
        _require_positive(self.log_every_steps, "trainer.log_every_steps")
        _require_positive(self.checkpoints_to_keep, "trainer.checkpoints_to_keep")


@dataclass
class Config:
    # Any: each option of these groups merges onto its own schema (see model/*.yaml).
    data: DataConfig = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    corruption: Any = MISSING
    trainer: TrainerConfig = MISSING
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    # The size of the code.
    latent_dim: int = 2
    # Seeds Python, NumPy and TensorFlow, the data order and the VAE noise.
    seed: int = 42

    def __post_init__(self) -> None:
        _require(0 < self.latent_dim <= MAX_LATENT_DIM,
                 f"latent_dim must be an integer in 1..{MAX_LATENT_DIM}, got {self.latent_dim}.")
        dims = self.evaluation.traversal_dims
        _require(dims is None or dims <= self.latent_dim,
                 f"evaluation.traversal_dims={dims} exceeds latent_dim={self.latent_dim}: give 0..{self.latent_dim}, "
                 "or null for min(latent_dim, 10).")
