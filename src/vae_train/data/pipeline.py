"""From IDX files to ``tf.data`` pipelines of float images in [0, 1], shaped (batch, height, width, 1).

The training pipeline of each epoch is a pure function of ``(seed, epoch)``: its shuffle order and
its dynamic binarization draw are seeded by both, so a resumed run sees the same data as an
uninterrupted one, and no two epochs see the same draw.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from vae_train.config import Binarize, DataConfig, DataSplit
from vae_train.data.idx import read_images, read_labels
from vae_train.data.sources import get_spec, locate_files
from vae_train.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# Test images per batch of the evaluations: a forward pass only, so several times a training batch
# keeps the kernels busy with fewer calls (measured by `make bench`).
TEST_BATCH = 512


@dataclass(frozen=True)
class InMemoryBatches:
    """A split's images held in memory as one tensor, read in order in batches of ``batch_size``.

    The evaluations loop over it inside one compiled call, slicing the tensor: on 2 cores that ran 1.6x
    as fast as a loop over a tf.data pipeline of the same batches, whose threads took turns with the
    model's (9,700 against 5,800 images/s for the default cvae, measured). ``dataset()`` gives the same
    batches as a tf.data pipeline, for the strategies that distribute them."""

    images: tf.Tensor  # (count, height, width, channels) float32 in [0, 1], on the host
    batch_size: int

    def dataset(self) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(self.images).batch(self.batch_size)


# A split read in order has its dynamic binarization drawn once, as if it were this epoch.
_IN_ORDER_EPOCHS = {"test": 2**31 - 1, "train": 2**31 - 2}


@dataclass
class Split:
    images: np.ndarray  # (count, height, width) uint8
    labels: np.ndarray  # (count,) uint8, kept for plots; training ignores them


@dataclass
class ImageDataset:
    name: str
    class_names: tuple[str, ...]
    train: Split
    test: Split  # the evaluated split: the test set, or the validation images held out

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of one image, as the models take it."""
        return (*self.train.images.shape[1:], 1)


def _concatenate(first: Split, second: Split) -> Split:
    return Split(np.concatenate([first.images, second.images]), np.concatenate([first.labels, second.labels]))


def _hold_out_validation(train: Split, size: int) -> tuple[Split, Split]:
    if size >= len(train.images):
        raise ConfigError(
            f"data.validation_size={size} leaves no training images of the {len(train.images)}; "
            "lower it or use data.split=standard."
        )
    cut = len(train.images) - size
    return Split(train.images[:cut], train.labels[:cut]), Split(train.images[cut:], train.labels[cut:])


# (published training set, published test set, config) -> (images to train on, images to evaluate).
SPLITS: dict[DataSplit, Callable[[Split, Split, DataConfig], tuple[Split, Split]]] = {
    DataSplit.standard: lambda train, test, config: (train, test),
    DataSplit.validation: lambda train, test, config: _hold_out_validation(train, config.validation_size),
    DataSplit.combined: lambda train, test, config: (_concatenate(train, test), test),
}


def _of_classes(split: Split, classes: list[int], class_count: int) -> Split:
    """The images of ``split`` whose labels are in ``classes`` (data.train_classes)."""
    unknown = sorted(set(classes) - set(range(class_count)))
    if unknown:
        raise ConfigError(f"data.train_classes={classes} names no class of this dataset: {unknown}; its class "
                          f"labels are 0 to {class_count - 1}.")
    chosen = np.isin(split.labels, classes)
    if not chosen.any():
        raise ConfigError(f"data.train_classes={classes} leaves no training image: the dataset's training "
                          f"images have the labels {sorted(set(split.labels.tolist()))}.")
    return Split(split.images[chosen], split.labels[chosen])


def _limit(split: Split, limit: int | None, what: str, key: str) -> Split:
    if limit is None:
        return split
    if limit > len(split.images):
        log.warning("%s=%d exceeds the %d %s examples; using all of them.", key, limit, len(split.images), what)
        return split
    return Split(split.images[:limit], split.labels[:limit])


def _read_split(images_path, labels_path) -> Split:
    images, labels = read_images(images_path), read_labels(labels_path)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels: "
            "the two files are from different datasets or one is damaged."
        )
    return Split(images, labels)


def _size(split: Split) -> str:
    return "x".join(str(side) for side in split.images.shape[1:])


def load_dataset(config: DataConfig) -> ImageDataset:
    """Locate (or download), verify and decode the dataset's train and test splits."""
    files = locate_files(config.name, config.root, config.cache_dir, config.verify_checksums)
    train = _read_split(files["train_images"], files["train_labels"])
    test = _read_split(files["test_images"], files["test_labels"])
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"{files['train_images']} holds {_size(train)} images but {files['test_images']} holds "
            f"{_size(test)} ones: the two files are from different datasets."
        )
    train, test = SPLITS[config.split](train, test, config)
    if config.train_classes is not None:
        train = _of_classes(train, config.train_classes, len(get_spec(config.name).class_names))
        if config.split is DataSplit.validation:  # the held-out images are normal ones too
            test = _of_classes(test, config.train_classes, len(get_spec(config.name).class_names))
    train = _limit(train, config.max_train_examples, "training", "data.max_train_examples")
    test = _limit(test, config.max_test_examples, "test", "data.max_test_examples")
    if len(train.images) < config.batch_size:
        raise ConfigError(
            f"data.batch_size={config.batch_size} exceeds the {len(train.images)} training examples; "
            "lower the batch size or raise data.max_train_examples."
        )
    return ImageDataset(config.name, get_spec(config.name).class_names, train, test)


def _to_unit_interval(images: tf.Tensor) -> tf.Tensor:
    return tf.expand_dims(tf.cast(images, tf.float32) / 255.0, axis=-1)


class ImagePipelines:
    """Builds the batched train and test pipelines of one dataset under one data config."""

    def __init__(self, dataset: ImageDataset, config: DataConfig, seed: int):
        self.config = config
        self.seed = seed
        train_images, test_images = dataset.train.images, dataset.test.images
        if config.binarize is Binarize.static:
            # Thresholding the uint8 pixels once is exact: x / 255 >= 0.5  <=>  x >= 128.
            train_images, test_images = (np.where(i >= 128, 255, 0).astype(np.uint8)
                                         for i in (train_images, test_images))
        # The decoded images, held in host memory once; training batches are gathered from them by
        # index. Pinned to the CPU so that the input pipeline never captures an accelerator's tensor.
        with tf.device("/cpu:0"):
            self._train_images = tf.constant(train_images)
        self._train = tf.data.Dataset.from_tensor_slices(self._train_images)
        self._test = tf.data.Dataset.from_tensor_slices(test_images)
        self.train_size = len(train_images)
        self.test_size = len(test_images)
        self._test_batches: InMemoryBatches | None = None

    @property
    def steps_per_epoch(self) -> int:
        return self.train_size // self.config.batch_size

    def _epoch_seed(self, epoch: int) -> int:
        return int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])

    def _finish(self, batches: tf.data.Dataset, epoch: int) -> tf.data.Dataset:
        if self.config.binarize is Binarize.dynamic:
            epoch_seed = tf.constant(self._epoch_seed(epoch), tf.int64)

            def draw(index, images):
                seed = tf.stack([epoch_seed, index])
                return tf.cast(tf.random.stateless_uniform(tf.shape(images), seed=seed) < images, tf.float32)

            batches = batches.enumerate().map(draw, num_parallel_calls=tf.data.AUTOTUNE)
        return batches.prefetch(tf.data.AUTOTUNE)

    def train(self, epoch: int) -> tf.data.Dataset:
        """Epoch ``epoch``'s shuffled full batches; the remainder is dropped so shapes stay fixed."""
        if not self.config.gather_batches:
            # tf.data shuffles and batches the images themselves: a third of the gathering's rate.
            buffer = self.config.shuffle_buffer or self.train_size
            batches = (self._train
                       .shuffle(buffer, seed=self._epoch_seed(epoch), reshuffle_each_iteration=False)
                       .batch(self.config.batch_size, drop_remainder=True)
                       .map(_to_unit_interval, num_parallel_calls=tf.data.AUTOTUNE))
            return self._finish(batches, epoch)
        batches = self._batch_indices(epoch).map(
            lambda indices: _to_unit_interval(tf.gather(self._train_images, indices)),
            num_parallel_calls=tf.data.AUTOTUNE)
        return self._finish(batches, epoch)

    def _batch_indices(self, epoch: int) -> tf.data.Dataset:
        """The epoch's order as batches of indices into the training images."""
        batch, steps = self.config.batch_size, self.steps_per_epoch
        if self.config.shuffle_buffer is None:
            # A whole-set shuffle drawn at once, in a millisecond: tf.data's whole-set shuffle buffer
            # holds up each epoch's first batch ~0.1 s (70,000 images) on the threads that train.
            order = np.random.default_rng(self._epoch_seed(epoch)).permutation(self.train_size)
            return tf.data.Dataset.from_tensor_slices(order[: steps * batch].reshape(steps, batch))
        # A partial shuffle keeps tf.data's buffer semantics (and the same order as shuffling the images).
        return (tf.data.Dataset.range(self.train_size)
                .shuffle(self.config.shuffle_buffer, seed=self._epoch_seed(epoch), reshuffle_each_iteration=False)
                .batch(batch, drop_remainder=True))

    @property
    def test_batch_size(self) -> int:
        return max(TEST_BATCH, self.config.batch_size)

    def test(self) -> tf.data.Dataset:
        """The whole test split in order, in batches of TEST_BATCH (or the training batch if larger); a
        dynamic binarization uses one fixed draw."""
        return self.in_order("test", self.test_batch_size)

    def test_batches(self) -> InMemoryBatches:
        """The batches of :meth:`test`, held in memory (made once)."""
        if self._test_batches is None:
            with tf.device("/cpu:0"):
                images = tf.concat(list(self.test()), axis=0)
            self._test_batches = InMemoryBatches(images, self.test_batch_size)
        return self._test_batches

    def in_order(self, split: str, batch_size: int | None = None) -> tf.data.Dataset:
        """All of ``split`` ("train" or "test") in file order, for evaluation and encoding; a dynamic
        binarization uses one fixed draw per split."""
        images = {"train": self._train, "test": self._test}[split]
        batches = (images.batch(batch_size or self.config.batch_size)
                   .map(_to_unit_interval, num_parallel_calls=tf.data.AUTOTUNE))
        return self._finish(batches, _IN_ORDER_EPOCHS[split])
