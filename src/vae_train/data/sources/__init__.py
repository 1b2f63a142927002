"""Where a data set's images come from: one reader per source, registered by the name that
``conf/data/<name>.yaml`` gives as ``data.name``.

Every reader returns the same thing, :class:`SourceImages`: the images to train on and the images to
test on, as uint8 ``(count, height, width, channels)`` arrays with their class indices, and the class
names. The pipeline (:mod:`vae_train.data.pipeline`) knows nothing of formats. Adding a source is one
module here, registered with :func:`register_source`, one schema (``vae_train.config.schema.data``) and
one YAML file in ``conf/data/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vae_train.data.arrays import Split
from vae_train.errors import ConfigError

# Names a folder of datasets, one subfolder per dataset name (e.g. $VAE_TRAIN_DATA/mnist).
DATA_ENV_VAR = "VAE_TRAIN_DATA"


@dataclass(frozen=True)
class ReadContext:
    """What a reader may need besides the data settings."""

    seed: int = 0  # the run's seed, for a split the source does not publish
    run_dir: Path | None = None  # the run folder, where a folder's recorded split is read from (split.csv)
    progress: bool = False  # show a progress bar while decoding


@dataclass
class SourceImages:
    train: Split  # the images the source offers for training
    test: Split  # the images it offers for testing
    class_names: tuple[str, ...]
    labelled: bool = True  # False: the labels are all 0 and mean nothing (no supervised figures)
    # Normal images held out of the training images, on which anomaly thresholds are chosen; None: none.
    validation: Split | None = None
    # The labels of the normal classes when the source says which images are anomalous (an inspection
    # data set: "good"); None: the one-class protocol of data.train_classes decides.
    normal_labels: tuple[int, ...] | None = None
    # Files to record in the run folder (name -> text), e.g. a split drawn now. A training run writes them
    # once it is sure to start, so that a run refused for another reason leaves its folder as it was.
    run_files: dict[str, str] = field(default_factory=dict)


Reader = Callable[..., SourceImages]  # (data settings, ReadContext) -> SourceImages
SOURCES: dict[str, Reader] = {}


def register_source(*names: str) -> Callable[[Reader], Reader]:
    """Register the decorated function as the reader of the data sets ``names``."""
    def register(reader: Reader) -> Reader:
        for name in names:
            SOURCES[name] = reader
        return reader

    return register


def read_source(config, context: ReadContext) -> SourceImages:
    try:
        reader = SOURCES[config.name]
    except KeyError:
        raise ConfigError(f"Unknown data set {config.name!r}; known: {', '.join(sorted(SOURCES))}.") from None
    return reader(config, context)


# The readers register themselves on import.
from vae_train.data.sources import cifar10, folder, mnist, mvtec  # noqa: E402, F401
