"""From a source's uint8 images to ``tf.data`` pipelines of float images in [0, 1], shaped (batch, height,
width, channels).

The training pipeline of each epoch is a pure function of ``(seed, epoch)``: its shuffle order and
its dynamic binarization draw are seeded by both, so a resumed run sees the same data as an
uninterrupted one, and no two epochs see the same draw.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from vae_train.config import Binarize, DataConfig, DataSplit
from vae_train.data.arrays import Images, RowSubset, Split, concatenate_splits
from vae_train.data.sources import ReadContext, read_source
from vae_train.errors import ConfigError

log = logging.getLogger(__name__)

# Test images per batch of the evaluations: a forward pass only, so several times a training batch
# keeps the kernels busy with fewer calls (measured by `make bench`).
TEST_BATCH = 512
# Larger images get fewer per evaluation batch, as many pixels as TEST_BATCH MNIST images: 512 images of
# 128x128 would hold gigabytes of a decoder's activations (it evaluated 130 such images 2.3x slower
# than batches of 16, measured).
EVALUATION_PIXELS = TEST_BATCH * 28 * 28


def evaluation_batch(image_shape: tuple[int, ...]) -> int:
    """Images per batch of a forward-only pass over images of ``image_shape``: TEST_BATCH for MNIST's."""
    return max(1, min(TEST_BATCH, EVALUATION_PIXELS // (image_shape[0] * image_shape[1])))


def unit_floats(pixels: tf.Tensor) -> tf.Tensor:
    """uint8 pixels as the models' float images in [0, 1]."""
    return tf.cast(pixels, tf.float32) / 255.0


@dataclass(frozen=True)
class InMemoryBatches:
    """A split's images held in memory as one uint8 tensor (a quarter of float32's memory: 1 GB of test
    images of 64x64x3 would otherwise sit beside the data), read in order in batches of ``batch_size``.

    The evaluations loop over it inside one compiled call, slicing the tensor and turning each slice into
    floats (:func:`unit_floats`): on 2 cores that ran 1.6x as fast as a loop over a tf.data pipeline of
    the same batches, whose threads took turns with the model's (9,700 against 5,800 images/s for the
    default cvae, measured). ``dataset()`` gives the same batches as a tf.data pipeline, for the
    strategies that distribute them."""

    pixels: tf.Tensor  # (count, height, width, channels) uint8, binarized as configured, on the host
    batch_size: int

    def dataset(self) -> tf.data.Dataset:
        batches = tf.data.Dataset.from_tensor_slices(self.pixels).batch(self.batch_size).map(unit_floats)
        return without_autotuning(batches)

    def take(self, count: int) -> InMemoryBatches:
        """The first ``count`` images, in the same batches."""
        return InMemoryBatches(self.pixels[:count], self.batch_size)


# A split read in order has its dynamic binarization drawn once, as if it were this epoch.
_IN_ORDER_EPOCHS = {"test": 2**31 - 1, "train": 2**31 - 2, "validation": 2**31 - 3}


@dataclass
class ImageDataset:
    name: str
    class_names: tuple[str, ...]
    train: Split
    test: Split  # the evaluated split: the test set, or the validation images held out
    labelled: bool = True  # False: one class, "image"; no supervised figures
    run_files: dict[str, str] = field(default_factory=dict)  # SourceImages.run_files
    validation: Split | None = None  # SourceImages.validation: normal images for anomaly thresholds
    normal_labels: tuple[int, ...] | None = None  # SourceImages.normal_labels

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of one image, as the models take it."""
        return tuple(self.train.images.shape[1:])


def _hold_out_validation(train: Split, size: int) -> tuple[Split, Split]:
    if size >= len(train.images):
        raise ConfigError(
            f"data.validation_size={size} leaves no training images of the {len(train.images)}; "
            "lower it or use data.split=standard."
        )
    cut = len(train.images) - size
    return train.select(slice(None, cut)), train.select(slice(cut, None))


# (the source's training images, its test images, config) -> (images to train on, images to evaluate).
SPLITS: dict[DataSplit, Callable[[Split, Split, DataConfig], tuple[Split, Split]]] = {
    DataSplit.standard: lambda train, test, config: (train, test),
    DataSplit.validation: lambda train, test, config: _hold_out_validation(train, config.validation_size),
    DataSplit.combined: lambda train, test, config: (concatenate_splits(train, test), test),
}


def class_indices(classes: list[str], class_names: tuple[str, ...]) -> list[int]:
    """The labels of ``classes`` (data.train_classes): each a class name, or else a label 0, 1, ..."""
    indices, unknown = [], []
    for entry in classes:
        entry = str(entry)
        if entry in class_names:
            indices.append(class_names.index(entry))
        elif entry.isdigit() and int(entry) < len(class_names):
            indices.append(int(entry))
        else:
            unknown.append(entry)
    if unknown:
        shown = ", ".join(class_names[:12]) + (", ..." if len(class_names) > 12 else "")
        raise ConfigError(f"data.train_classes={list(classes)} names no class of this dataset: {unknown}; its class "
                          f"labels are 0 to {len(class_names) - 1}, its class names {shown}.")
    return indices


def _of_classes(split: Split, labels: list[int], classes: list[str]) -> Split:
    """The images of ``split`` whose labels are in ``labels`` (data.train_classes)."""
    chosen = np.isin(split.labels, labels)
    if not chosen.any():
        raise ConfigError(f"data.train_classes={list(classes)} leaves no training image: the dataset's training "
                          f"images have the labels {sorted(set(split.labels.tolist()))}.")
    return split.select(chosen)


def _limit(split: Split, limit: int | None, what: str, key: str) -> Split:
    if limit is None:
        return split
    if limit > len(split.images):
        log.warning("%s=%d exceeds the %d %s examples; using all of them.", key, limit, len(split.images), what)
        return split
    return split.select(slice(None, limit))


def load_dataset(config: DataConfig, context: ReadContext | None = None) -> ImageDataset:
    """Read the source's images (locating, downloading or decoding them), then split, filter and limit
    them as the data settings say."""
    context = context or ReadContext()
    source = read_source(config, context)
    train, test = SPLITS[config.split](source.train, source.test, config)
    if config.train_classes is not None:
        if not source.labelled:
            raise ConfigError(f"data.train_classes={list(config.train_classes)} needs labelled images, but "
                              f"{config.name}'s are unlabelled: put each class in a subfolder of data.root "
                              "(data.labels=inferred), or set data.train_classes=null.")
        labels = class_indices(config.train_classes, source.class_names)
        train = _of_classes(train, labels, config.train_classes)
        if config.split is DataSplit.validation:  # the held-out images are normal ones too
            test = _of_classes(test, labels, config.train_classes)
    train = _limit(train, config.max_train_examples, "training", "data.max_train_examples")
    test = _limit(test, config.max_test_examples, "test", "data.max_test_examples")
    if len(train.images) < config.batch_size:
        raise ConfigError(
            f"data.batch_size={config.batch_size} exceeds the {len(train.images)} training examples; "
            "lower the batch size or raise data.max_train_examples."
        )
    return ImageDataset(config.name, source.class_names, train, test, source.labelled, source.run_files,
                        source.validation, source.normal_labels)


def _thresholded(images: tf.Tensor) -> tf.Tensor:
    # Exact: x / 255 >= 0.5  <=>  x >= 128.
    return tf.cast(images >= 128, tf.float32)


# uint8 pixels -> the float images the models see, by data.binarize (dynamic draws from the scaled ones).
TO_FLOAT: dict[Binarize, Callable[[tf.Tensor], tf.Tensor]] = {
    Binarize.none: unit_floats, Binarize.dynamic: unit_floats, Binarize.static: _thresholded,
}


def without_autotuning(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` without tf.data's autotuning model. Its thread, one per iterator, sleeps between
    optimizations for periods that double up to a minute, and deleting an iterator waited for it: 2 to
    17 s after one epoch in two or three on MNIST, counted by no timer. Without the model, AUTOTUNE's
    parallel calls take the cores and prefetch grows its own buffer, and the input stays hundreds of
    times faster than training (``make bench``, pipeline and colour sections)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


class RowReader:
    """Reads rows of a split's images by index, as a uint8 tensor: from a copy in host memory for an
    in-memory array, or straight from the memory map for a cache's rows (so a set larger than memory
    still trains, and parallel jobs share its pages)."""

    def __init__(self, images: Images):
        self.shape = tuple(images.shape[1:])
        self._images = images
        self._tensor = None
        if not isinstance(images, RowSubset):
            # Pinned to the CPU so that the input pipeline never captures an accelerator's tensor.
            with tf.device("/cpu:0"):
                self._tensor = tf.constant(images)

    def __call__(self, indices: tf.Tensor) -> tf.Tensor:
        if self._tensor is not None:
            return tf.gather(self._tensor, indices)
        rows = tf.numpy_function(self._images.take, [indices], tf.uint8, stateful=False)
        return tf.ensure_shape(rows, (None, *self.shape))


class ImagePipelines:
    """Builds the batched train and test pipelines of one dataset under one data config."""

    def __init__(self, dataset: ImageDataset, config: DataConfig, seed: int):
        self.config = config
        self.seed = seed
        self._to_float = TO_FLOAT[config.binarize]
        # Batches are gathered by index from the decoded uint8 images, held once (or memory-mapped).
        splits = {"train": dataset.train, "test": dataset.test, "validation": dataset.validation}
        self._readers = {name: RowReader(split.images) for name, split in splits.items() if split is not None}
        self._sizes = {name: len(split.images) for name, split in splits.items() if split is not None}
        self._train_images = dataset.train.images
        self.image_shape = dataset.image_shape
        self.train_size = len(dataset.train.images)
        self.test_size = len(dataset.test.images)
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
        return without_autotuning(batches.prefetch(tf.data.AUTOTUNE))

    def _gathered(self, split: str, indices: tf.data.Dataset) -> tf.data.Dataset:
        """Batches of ``split``'s images at each batch of ``indices``, as the models' floats."""
        reader = self._readers[split]
        return indices.map(lambda batch: self._to_float(reader(batch)), num_parallel_calls=tf.data.AUTOTUNE)

    def train(self, epoch: int) -> tf.data.Dataset:
        """Epoch ``epoch``'s shuffled full batches; the remainder is dropped so shapes stay fixed."""
        if not self.config.gather_batches:
            # tf.data shuffles and batches the images themselves: a third of the gathering's rate.
            buffer = self.config.shuffle_buffer or self.train_size
            batches = (tf.data.Dataset.from_tensor_slices(np.asarray(self._train_images))
                       .shuffle(buffer, seed=self._epoch_seed(epoch), reshuffle_each_iteration=False)
                       .batch(self.config.batch_size, drop_remainder=True)
                       .map(self._to_float, num_parallel_calls=tf.data.AUTOTUNE))
            return self._finish(batches, epoch)
        return self._finish(self._gathered("train", self._batch_indices(epoch)), epoch)

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
        return max(evaluation_batch(self.image_shape), self.config.batch_size)

    def test(self) -> tf.data.Dataset:
        """The whole test split in order, in batches of :func:`evaluation_batch` (or the training batch if
        larger); a dynamic binarization uses one fixed draw."""
        return self.in_order("test", self.test_batch_size)

    def test_batches(self) -> InMemoryBatches:
        """The batches of :meth:`test`, held in memory (made once). Their floats are 0, 1 or a uint8 level
        over 255, so the uint8 round trip is exact."""
        if self._test_batches is None:
            with tf.device("/cpu:0"):
                pixels = tf.concat([tf.cast(tf.round(batch * 255.0), tf.uint8) for batch in self.test()], axis=0)
            self._test_batches = InMemoryBatches(pixels, self.test_batch_size)
        return self._test_batches

    def in_order(self, split: str, batch_size: int | None = None) -> tf.data.Dataset:
        """All of ``split`` ("train", "test", or "validation" when the source holds normal images out) in
        order, for evaluation and encoding; a dynamic binarization uses one fixed draw per split."""
        indices = tf.data.Dataset.range(self._sizes[split]).batch(batch_size or self.config.batch_size)
        return self._finish(self._gathered(split, indices), _IN_ORDER_EPOCHS[split])
