"""Test-set figures of a model: the losses in nats per image (under any distribution strategy), and
figures some recipes define besides them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from vae_train.config import ExtraMetric
from vae_train.data.corruption import Corrupt
from vae_train.data.pipeline import InMemoryBatches, unit_floats
from vae_train.models import Autoencoder
from vae_train.models.terms import metrics_from_sums, summed_terms, sums_size
from vae_train.runtime.devices import distribute_input, trains_on_host_cpu
from vae_train.runtime.functions import run_function

# Reported when the optimizer minimizes something other than ``loss`` (a recipe's own definition).
RECIPE_LOSS = "recipe_loss"
# Reported by a denoiser: its loss on corrupted inputs against the clean images, and the PSNR of the
# denoised and of the corrupted images against the clean ones.
DENOISING = ("denoising_loss", "denoising_psnr", "corrupted_psnr")
# The evaluator's corruption stream, apart from its posterior noise (seeded by the run's seed).
CORRUPTION_SEED_OFFSET = 104_729
# Reported for grey-level (not binarized) images: how close the reconstructions (from the posterior mean)
# are to the images, as the image-processing literature measures it.
IMAGE_QUALITY = ("psnr", "ssim")
# A reconstruction equal to its image has an infinite PSNR; reported as this many dB, as :func:`psnr` does,
# so the mean stays finite (and results.json valid JSON).
MAX_PSNR = 100.0
# SSIM's usual Gaussian window (Wang et al. 2004), as tf.image.ssim defaults to.
SSIM_FILTER_SIZE = 11
SSIM_FILTER_SIGMA = 1.5


def psnr(clean: tf.Tensor, other: tf.Tensor) -> tf.Tensor:
    """Per image, the peak signal-to-noise ratio of ``other`` against ``clean`` (pixels in [0, 1]), in
    dB; an exact copy scores 100 (a mean squared error of 1e-10), not infinity."""
    mse = tf.reduce_mean(tf.square(other - clean), axis=[1, 2, 3])
    return 10.0 * tf.math.log(1.0 / tf.maximum(mse, 1e-10)) / tf.math.log(10.0)


def rounded_accuracy(images: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per image, the share of pixels where round(image) == round(reconstruction), as in Keras'
    binary accuracy of rounded targets (recipe B)."""
    agree = tf.equal(tf.round(images), tf.round(tf.sigmoid(logits)))
    return tf.reduce_mean(tf.cast(agree, tf.float32), axis=[1, 2, 3])


@dataclass(frozen=True)
class ImageQuality:
    """Per image, the PSNR and SSIM of the reconstruction from the posterior mean against the image,
    pixels in [0, 1], for images of ``height`` x ``width`` pixels (grey or colour: SSIM averages the
    channels')."""

    height: int
    width: int

    @property
    def ssim_filter(self) -> tuple[int, float]:
        """SSIM's window size and Gaussian width: the usual 11 pixels, or the image's smaller side if that
        is less (a larger window fits nowhere), its width shrunk in proportion so it still tapers."""
        size = min(SSIM_FILTER_SIZE, self.height, self.width)
        return size, SSIM_FILTER_SIGMA * size / SSIM_FILTER_SIZE

    def __call__(self, images: tf.Tensor, reconstructions: tf.Tensor) -> list[tf.Tensor]:
        images = tf.cast(images, tf.float32)
        reconstructions = tf.clip_by_value(reconstructions, 0.0, 1.0)
        filter_size, filter_sigma = self.ssim_filter
        return [tf.minimum(tf.image.psnr(images, reconstructions, max_val=1.0), MAX_PSNR),
                tf.image.ssim(images, reconstructions, max_val=1.0, filter_size=filter_size,
                              filter_sigma=filter_sigma)]


# Per-image figures of (images, reconstruction logits from the posterior mean), by config name.
EXTRA_METRICS: dict[ExtraMetric, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    ExtraMetric.rounded_accuracy: rounded_accuracy,
}


class Evaluator:
    """Test-set figures as a deterministic function of the weights.

    A VAE's figures depend on the posterior samples drawn; drawing them from a stream reset to
    the same seed at every evaluation makes epochs comparable and re-evaluation reproducible. One
    call of a compiled function goes through the whole test set, so an evaluation costs what its
    forward passes cost, and each run traces it once. The codes (posterior means) of the test images,
    a by-product, are kept as ``test_codes``, in the dataset's order, for the pictures.

    ``image_quality``: also the mean PSNR and SSIM of the reconstructions (``psnr``, ``ssim``), which
    mean something for grey levels, not for binarized images.
    """

    def __init__(self, model: Autoencoder, strategy: tf.distribute.Strategy, jit_compile: bool = False,
                 seed: int = 0, metrics: Sequence[ExtraMetric] = (), corrupt: Corrupt | None = None,
                 image_quality: bool = False):
        self.model = model
        self.strategy = strategy
        self.seed = seed
        self.metrics = list(metrics)
        self.corrupt = corrupt
        height, width, _ = model.image_shape
        self.image_quality = ImageQuality(height, width) if image_quality else None
        self.sums_size = sums_size(model.reported_terms)
        self.extra_names = (([RECIPE_LOSS] if model.reports_recipe_loss else []) + [m.value for m in self.metrics]
                            + (list(DENOISING) if corrupt is not None else [])
                            + (list(IMAGE_QUALITY) if image_quality else []))
        with strategy.scope():
            self.noise = tf.random.Generator.from_seed(seed)
            self.corruption_noise = tf.random.Generator.from_seed(seed + CORRUPTION_SEED_OFFSET)
        self._replica_sums = run_function(self._sums, jit_compile=True) if jit_compile else self._sums
        self._sums_over = run_function(self._distributed_sums_over)
        self._sums_over_tensor = run_function(self._sums_over_slices)
        self.test_codes: np.ndarray | None = None

    def _sums(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The sums of :func:`summed_terms`, then the sums of the extra figures; and the batch's codes."""
        posterior = self.model.posterior(images)
        terms = self.model.loss_terms(images, training=False, noise=self.noise, posterior=posterior)
        extras = [terms["objective"]] if self.model.reports_recipe_loss else []
        # The reconstructions from the posterior mean, decoded once for every figure that asks for them.
        logits = self.model(images) if self.metrics or self.image_quality is not None else None
        if self.metrics:
            extras += [EXTRA_METRICS[metric](images, logits) for metric in self.metrics]
        if self.corrupt is not None:
            corrupted = self.corrupt(images, self.corruption_noise)
            denoised = self.model.mean_images(self.model(corrupted))  # from the posterior mean
            extras += [self.model.loss_terms(images, training=False, noise=self.noise, inputs=corrupted)["loss"],
                       psnr(images, denoised), psnr(images, corrupted)]
        if self.image_quality is not None:
            extras += self.image_quality(images, self.model.mean_images(logits))
        sums = tf.concat([summed_terms(terms, self.model.reported_terms), [tf.reduce_sum(extra) for extra in extras]],
                         axis=0)
        return sums, posterior.mean

    def _distributed_sums_over(self, dataset) -> tuple[tf.Tensor, tf.Tensor]:
        total = tf.zeros([self.sums_size + len(self.extra_names)], tf.float64)  # float64: sums of 10^4 losses
        codes = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False)
        for images in dataset:
            sums, means = self.strategy.run(self._replica_sums, args=(images,))
            total += tf.cast(self.strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None), tf.float64)
            codes = codes.write(codes.size(), self.strategy.gather(means, axis=0))
        return total, codes.concat()

    def _sums_over_slices(self, pixels: tf.Tensor, batch_size: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """As :meth:`_distributed_sums_over`, over the batches of in-memory uint8 images (one host replica)."""
        total = tf.zeros([self.sums_size + len(self.extra_names)], tf.float64)
        codes = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False)
        for start in tf.range(0, tf.shape(pixels)[0], batch_size):
            sums, means = self._replica_sums(unit_floats(pixels[start:start + batch_size]))
            total += tf.cast(sums, tf.float64)
            codes = codes.write(codes.size(), means)
        return total, codes.concat()

    def evaluate(self, test: InMemoryBatches | tf.data.Dataset) -> dict[str, float]:
        """The figures of ``test``'s images (batched, in order); the same figures from either form."""
        self.noise.reset_from_seed(self.seed)
        self.corruption_noise.reset_from_seed(self.seed + CORRUPTION_SEED_OFFSET)
        if isinstance(test, InMemoryBatches) and trains_on_host_cpu(self.strategy):
            sums, codes = self._sums_over_tensor(test.pixels, tf.constant(test.batch_size))
        else:
            dataset = test.dataset() if isinstance(test, InMemoryBatches) else test
            sums, codes = self._sums_over(distribute_input(self.strategy, dataset))
        sums, self.test_codes = sums.numpy(), codes.numpy()
        terms, extras = sums[:self.sums_size], sums[self.sums_size:]
        figures = metrics_from_sums(terms, self.model.variational, self.model.reported_terms)
        figures.update({name: float(total / terms[-1]) for name, total in zip(self.extra_names, extras, strict=True)})
        return figures
