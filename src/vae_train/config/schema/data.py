"""The data group: what every source shares, and one schema per kind of source."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from omegaconf import MISSING

from vae_train.config.schema.common import option_schema, require, require_positive


class Binarize(Enum):
    """How pixel intensities in [0, 1] become the training targets."""

    static = "static"  # threshold once at 0.5
    dynamic = "dynamic"  # a fresh Bernoulli draw per epoch
    none = "none"  # keep grey levels


class DataSplit(Enum):
    """Which images train the model and which are evaluated as the "test" set."""

    standard = "standard"  # the published training and test sets
    validation = "validation"  # the last data.validation_size training images are held out and evaluated
    combined = "combined"  # train on training + test images; the test set is evaluated but not held out


class Resize(Enum):
    """How a folder's images of another size or aspect become data.image_size."""

    stretch = "stretch"  # resize to the target, whatever the aspect
    crop = "crop"  # the largest centred crop of the target's aspect, then resize
    pad = "pad"  # resize to fit inside the target, keeping the aspect, centred on black (letterbox)


class Labels(Enum):
    """Where a folder's class labels come from (null: none, an unlabelled set)."""

    inferred = "inferred"  # each image's first-level subfolder is its class, sorted by name


@dataclass
class DataConfig:
    """What every source shares; each source's schema adds where its images come from."""

    name: str = MISSING
    # Where the images are; what it holds depends on the source (see its schema).
    root: str | None = None
    # Downloads, and the decoded images of folders.
    cache_dir: str = "~/.cache/vae-train"
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
    # Train (and hold out for validation) only images of these classes, by name or by label (0, 1, ...);
    # the test set keeps every class, its others being the anomalies of the one-class protocol.
    # null: every class.
    train_classes: list[str] | None = None

    def __post_init__(self) -> None:
        require_positive(self.batch_size, "data.batch_size")
        require_positive(self.max_train_examples, "data.max_train_examples")
        require_positive(self.max_test_examples, "data.max_test_examples")
        require_positive(self.shuffle_buffer, "data.shuffle_buffer")
        require_positive(self.validation_size, "data.validation_size")
        require(self.train_classes is None or len(self.train_classes) > 0,
                "data.train_classes=[] names no class: list the classes to train on, e.g. "
                "data.train_classes=[3], or null for every class.")


@option_schema("data", "mnist")
@option_schema("data", "fashion")
@option_schema("data", "cifar10")
@dataclass
class PublishedDataConfig(DataConfig):
    """A published data set: a local copy of its files in ``root``; null: $VAE_TRAIN_DATA/<name> if set,
    else downloaded into ``cache_dir`` (checksum-verified)."""

    # Check a local copy's files against the published md5 sums.
    verify_checksums: bool = True


@dataclass
class ImageFilesConfig(DataConfig):
    """What every source of image files shares (PNG, JPEG, BMP, GIF, TIFF, WebP): how they are decoded."""

    root: str = MISSING
    # [height, width]; null: the images' own size when they all share one.
    image_size: list[int] | None = None
    resize: Resize = Resize.stretch
    # 1 or 3; null: 1 when every file is grey, else 3.
    channels: int | None = None
    # Skip files that do not decode (counted in the log) instead of stopping.
    skip_unreadable: bool = False
    # Threads decoding the images on the first run; null: one per core.
    decode_workers: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.image_size is None or (len(self.image_size) == 2 and min(self.image_size) > 0),
                f"data.image_size must be [height, width] in pixels, or null, got {self.image_size}.")
        require(self.channels in (None, 1, 3), f"data.channels must be 1, 3 or null, got {self.channels}.")
        require_positive(self.decode_workers, "data.decode_workers")


@option_schema("data", "folder")
@dataclass
class FolderDataConfig(ImageFilesConfig):
    """A folder of the user's own images, searched recursively, classed by their subfolders or not."""

    labels: Labels | None = Labels.inferred
    # A second folder of test images in the same layout; null: a seeded, stratified share of root's.
    test_root: str | None = None
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0.0 < self.test_fraction < 1.0,
                f"data.test_fraction must be between 0 and 1 (a share of the images), got {self.test_fraction}.")


@option_schema("data", "mvtec")
@dataclass
class MVTecDataConfig(ImageFilesConfig):
    """One category of the MVTec AD layout (visual inspection): ``root`` holds ``train/good`` (the normal
    training images), ``test/good`` and ``test/<defect>`` (the test images, classed by folder), and
    optionally ``ground_truth/<defect>/<name>_mask.png`` (each defect image's mask)."""

    # The seeded share of train/good held out as normal validation images (where anomaly thresholds are set).
    validation_fraction: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0.0 < self.validation_fraction < 1.0,
                "data.validation_fraction must be between 0 and 1 (a share of train/good's images), got "
                f"{self.validation_fraction}.")
