"""Bounds on a VAE's log-likelihood per test image, from K importance samples (Burda et al., 2016):
the importance-weighted (IWAE) bound and the Monte Carlo ELBO, both from the same samples."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from vae_train.data.pipeline import InMemoryBatches, unit_floats
from vae_train.evaluation.bound_progress import BoundProgress, bound_fingerprint, progress_file
from vae_train.files import shown_path
from vae_train.models import Autoencoder, VariationalAutoencoder
from vae_train.models.base import Posterior
from vae_train.runtime.functions import run_function

# Images the likelihood estimate decodes a pass, whatever the number of samples and the batch. On a CPU,
# small passes keep a decoder's activations in cache: on 2 cores the conv VAE's bound decoded 1.24x as many
# images a second in passes of 128 as in passes of 2048 (bench's iw_bound section). A GPU wants large passes
# to keep it busy; 2048 bounds their memory (a 28x28 decoder's activations are ~50 kB per image).
DECODES_PER_PASS = {"CPU": 128, "GPU": 2048}
# A bound with a progress folder and more decodes than this goes in parts of about this many decodes,
# each saved when done: whole batches, or slices of one batch (of whole decoder-pass slices) when a batch
# alone is more. With K = 5000 a part is 128 MNIST images on a CPU, 640,000 decodes and some 5 minutes
# of the conv VAE on 2 cores: at most that is lost to a stop (a whole batch of 512 was some 20 minutes).
DECODES_PER_PART = 2**20
# The time a long bound has left is told from its last few parts' rate, not the whole call's: a busier
# spell of the machine, or a process stopped for a while, stops counting once it is past.
RATE_WINDOW_PARTS = 4

log = logging.getLogger(__name__)


def decodes_per_pass() -> int:
    """The bound's decoder pass for this process's devices: a GPU's when it sees one."""
    return DECODES_PER_PASS["GPU" if tf.config.list_logical_devices("GPU") else "CPU"]


def _batch_summaries(model: VariationalAutoencoder, images: tf.Tensor, noise: tf.random.Generator,
                     num_samples: tf.Tensor, decodes_per_chunk: tf.Tensor, begin: tf.Tensor | int = 0,
                     end: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """Per image of a batch, or of its images ``begin:end``: the mean and the log-mean-exp of
    ``num_samples`` log importance weights.

    The decoder sees about ``decodes_per_chunk`` images a call: several samples of the whole batch, or one
    sample of a slice of it when the batch alone is more."""
    # All of a batch's noise at once, in the order the bound has always drawn it: the images begin:end get
    # the samples they get when the whole batch is bounded.
    epsilon = noise.normal([num_samples, tf.shape(images)[0], model.latent_dim])
    end = tf.shape(images)[0] if end is None else end
    images, epsilon = images[begin:end], epsilon[:, begin:end]
    batch = tf.shape(images)[0]
    posterior = model.posterior(images)  # the encoder once per image, whatever the chunks
    images_per_slice = tf.minimum(batch, decodes_per_chunk)
    samples_per_chunk = tf.maximum(1, decodes_per_chunk // images_per_slice)
    weight_sums = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False)
    log_sums = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False)
    for first in tf.range(0, batch, images_per_slice):
        last = tf.minimum(first + images_per_slice, batch)
        part = Posterior(mean=posterior.mean[first:last], log_variance=posterior.log_variance[first:last])
        log_sum = tf.fill([last - first], -float("inf"))
        weight_sum = tf.zeros([last - first])
        for start in tf.range(0, num_samples, samples_per_chunk):
            weights = model.log_importance_weights(images[first:last],
                                                   epsilon[start:start + samples_per_chunk, first:last], part)
            log_sum = tf.reduce_logsumexp(tf.stack([log_sum, tf.reduce_logsumexp(weights, axis=0)]), axis=0)
            weight_sum += tf.reduce_sum(weights, axis=0)
        weight_sums = weight_sums.write(weight_sums.size(), weight_sum)
        log_sums = log_sums.write(log_sums.size(), log_sum)
    count = tf.cast(num_samples, tf.float32)
    return weight_sums.concat() / count, log_sums.concat() - tf.math.log(count)


# Module level: one trace per model serves every test set and sample count.
@run_function(reduce_retracing=True)
def _summaries_over_dataset(model, dataset: tf.data.Dataset, noise, num_samples, decodes_per_chunk):
    means = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False)
    log_means = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False)
    for images in dataset:
        mean, log_mean = _batch_summaries(model, images, noise, num_samples, decodes_per_chunk)
        means, log_means = means.write(means.size(), mean), log_means.write(log_means.size(), log_mean)
    return means.concat(), log_means.concat()


@run_function(reduce_retracing=True)
def _summaries_over_slices(model, pixels: tf.Tensor, batch_size, noise, num_samples, decodes_per_chunk):
    means = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False)
    log_means = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False)
    for start in tf.range(0, tf.shape(pixels)[0], batch_size):
        mean, log_mean = _batch_summaries(model, unit_floats(pixels[start:start + batch_size]), noise, num_samples,
                                          decodes_per_chunk)
        means, log_means = means.write(means.size(), mean), log_means.write(log_means.size(), log_mean)
    return means.concat(), log_means.concat()


@run_function(reduce_retracing=True)
def _summaries_within_batch(model, batch_pixels: tf.Tensor, begin, end, noise, num_samples, decodes_per_chunk):
    return _batch_summaries(model, unit_floats(batch_pixels), noise, num_samples, decodes_per_chunk, begin, end)


def per_image_bounds(model: VariationalAutoencoder, test: InMemoryBatches | tf.data.Dataset, num_samples: int,
                     seed: int = 0, decodes_per_chunk: int | None = None, progress_folder: Path | None = None,
                     decodes_per_part: int = DECODES_PER_PART) -> tuple[np.ndarray, np.ndarray]:
    """Per image of ``test`` (batches in memory, or a dataset: the same figures), in nats: the negative
    Monte Carlo ELBO and the importance-weighted estimate of -log p(x) (the IWAE bound), both from the
    same ``num_samples`` posterior samples.

    The bound's expectation is -ELBO for one sample and decreases towards -log p(x) as the number of
    samples grows. The samples are decoded in passes of about ``decodes_per_chunk`` images (by default
    :func:`decodes_per_pass`), so memory does not grow with their number, and the figures do not depend
    on the pass size. The decoder computes in the model's precision; the weights and their log-sum-exp
    are float32.

    With ``progress_folder``, batches in memory that need more than ``decodes_per_part`` decodes are
    bounded in parts, each saved there when done (:mod:`.bound_progress`): whole batches, or slices of a
    batch when one batch is more. A call after a stop resumes from the last part saved, with the figures
    of a call that was not stopped.
    """
    noise = tf.random.Generator.from_seed(seed)
    pass_size = decodes_per_chunk or decodes_per_pass()
    samples, chunk = tf.constant(num_samples), tf.constant(pass_size)
    if not isinstance(test, InMemoryBatches):
        means, log_means = _summaries_over_dataset(model, test, noise, samples, chunk)
        return -means.numpy(), -log_means.numpy()
    images, batch = int(test.pixels.shape[0]), test.batch_size
    images_per_part = _images_per_part(num_samples, batch, pass_size, decodes_per_part)
    if progress_folder is None or images <= images_per_part:
        means, log_means = _summaries_over_slices(model, test.pixels, tf.constant(batch), noise, samples, chunk)
        return -means.numpy(), -log_means.numpy()
    fingerprint = bound_fingerprint([weight.numpy() for weight in model.weights], test.pixels.numpy(), num_samples,
                                    seed, batch)
    progress = BoundProgress.resume(progress_file(progress_folder, num_samples), fingerprint)
    if progress.noise_state is not None:
        noise.reset(progress.noise_state)
    time_left = TimeLeft(progress.images_done, images)
    start = progress.images_done
    while start < images:
        if start % batch == 0 and images_per_part >= batch:
            end = min(start + images_per_part, images)
            means, log_means = _summaries_over_slices(model, test.pixels[start:end], tf.constant(batch), noise,
                                                      samples, chunk)
        else:  # a slice of the batch holding image `start`, drawn from the noise at the batch's start
            first = start - start % batch
            last = min(first + batch, images)
            end = min(start + images_per_part, last)
            at_batch_start = noise.state.numpy()
            means, log_means = _summaries_within_batch(model, test.pixels[first:last], tf.constant(start - first),
                                                       tf.constant(end - first), noise, samples, chunk)
            if end < last:  # the batch's next slice draws the same noise again
                noise.reset(at_batch_start)
        progress.add(-means.numpy(), -log_means.numpy(), noise.state.numpy())
        start = progress.images_done
        if start < images:
            log.info("The bound (K = %d): %d of %d test images done; about %s left. Saved in %s.", num_samples,
                     start, images, _remaining(time_left.after_part(start)), shown_path(progress.path))
    return progress.finished()


def _images_per_part(num_samples: int, batch: int, pass_size: int, decodes_per_part: int) -> int:
    """Whole batches of at most ``decodes_per_part`` decodes; when one batch is more, a whole number of
    the decoder's pass slices, so a part's images are decoded in the passes of the whole batch."""
    if num_samples * batch <= decodes_per_part:
        return decodes_per_part // (num_samples * batch) * batch
    pass_slice = min(batch, pass_size)
    return min(batch, max(1, decodes_per_part // (num_samples * pass_slice)) * pass_slice)


class TimeLeft:
    """The seconds a bound in parts has left, at the rate of its last ``window`` parts."""

    def __init__(self, images_done: int, images: int, window: int = RATE_WINDOW_PARTS,
                 clock: Callable[[], float] = time.perf_counter):
        self.images, self.clock = images, clock
        self.marks = deque([(clock(), images_done)], maxlen=window + 1)

    def after_part(self, images_done: int) -> float:
        self.marks.append((self.clock(), images_done))
        (then, done_then), (now, done_now) = self.marks[0], self.marks[-1]
        return (now - then) / (done_now - done_then) * (self.images - done_now)


def _remaining(seconds: float) -> str:
    if seconds < 60:
        return f"{round(seconds)} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def importance_weighted_nll(model: VariationalAutoencoder, test: InMemoryBatches | tf.data.Dataset,
                            num_samples: int, seed: int = 0, decodes_per_chunk: int | None = None) -> float:
    """The IWAE bound of :func:`per_image_bounds`, averaged over ``test``: nats per image."""
    _, bounds = per_image_bounds(model, test, num_samples, seed, decodes_per_chunk)
    return float(np.mean(bounds, dtype=np.float64))


def has_likelihood_bound(model: Autoencoder, num_samples: int) -> bool:
    """A VAE whose reconstruction loss is a likelihood, and samples asked for."""
    return model.variational and model.has_likelihood and num_samples > 0
