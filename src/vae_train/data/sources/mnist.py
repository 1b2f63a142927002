"""MNIST and Fashion-MNIST: four IDX files each, from a local folder or a checksum-verified download.

Adding a data set in the same format is one :class:`IDXDataset` in ``IDX_DATASETS``, its name in the
``register_source`` call below, and one YAML file in ``conf/data/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vae_train.data.arrays import Split
from vae_train.data.download import download, verify_md5
from vae_train.data.idx import read_images, read_labels
from vae_train.data.sources import DATA_ENV_VAR, ReadContext, SourceImages, register_source
from vae_train.errors import DataError

SPLIT_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class IDXDataset:
    name: str
    mirrors: tuple[str, ...]  # base URLs, tried in order
    md5: dict[str, str]  # split file key (SPLIT_FILES) -> md5 of the published file
    class_names: tuple[str, ...]


IDX_DATASETS: dict[str, IDXDataset] = {
    spec.name: spec
    for spec in (
        IDXDataset(
            name="mnist",
            mirrors=(
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
            ),
            md5={
                "train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
                "test_images": "9fb629c4189551a2d022fa330f9573f3",
                "test_labels": "ec29112dd5afa0611ce80d1b7f02629c",
            },
            class_names=tuple(str(digit) for digit in range(10)),
        ),
        IDXDataset(
            name="fashion",
            mirrors=(
                "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            ),
            md5={
                "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
                "test_images": "bef4ecab320f06d8554ea6380940ec79",
                "test_labels": "bb300cfdad3c16e7a12a480ee83cd310",
            },
            class_names=(
                "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
            ),
        ),
    )
}


def locate_files(name: str, root: str | None, cache_dir: str, verify_checksums: bool) -> dict[str, Path]:
    """Paths of the four IDX files of data set ``name``, downloading them if no folder is given.

    Order of precedence: ``root``; else ``$VAE_TRAIN_DATA/<name>``; else the download cache.
    """
    spec = IDX_DATASETS[name]
    if root is None and os.environ.get(DATA_ENV_VAR):
        root = os.path.join(os.environ[DATA_ENV_VAR], name)
    if root is None:
        return {key: download(filename, spec.mirrors, spec.md5[key], Path(cache_dir).expanduser(), spec.name)
                for key, filename in SPLIT_FILES.items()}

    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"Data folder {folder} does not exist. Pass data.root=<folder with the IDX files>, "
            f"or data.root=null to download {name} into {cache_dir}."
        )
    files = {key: folder / filename for key, filename in SPLIT_FILES.items()}
    missing = [path.name for path in files.values() if not path.is_file()]
    if missing:
        raise DataError(
            f"Data folder {folder} lacks {', '.join(missing)}; it needs the four files "
            f"{', '.join(SPLIT_FILES.values())}."
        )
    if verify_checksums:
        for key, path in files.items():
            verify_md5(path, spec.md5[key],
                       f"The file is corrupt or not the published {name} file: replace it, or pass "
                       "data.verify_checksums=false to use a modified dataset on purpose.")
    return files


def _read_split(images_path: Path, labels_path: Path) -> Split:
    images, labels = read_images(images_path), read_labels(labels_path)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels: "
            "the two files are from different datasets or one is damaged."
        )
    return Split(images[..., None], labels.astype(int))


def _size(images) -> str:
    return "x".join(str(side) for side in images.shape[1:3])


@register_source(*IDX_DATASETS)
def read_idx_dataset(config, context: ReadContext) -> SourceImages:
    """The published training and test sets of ``config.name``, as (count, 28, 28, 1) images."""
    files = locate_files(config.name, config.root, config.cache_dir, config.verify_checksums)
    train = _read_split(files["train_images"], files["train_labels"])
    test = _read_split(files["test_images"], files["test_labels"])
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"{files['train_images']} holds {_size(train.images)} images but {files['test_images']} holds "
            f"{_size(test.images)} ones: the two files are from different datasets."
        )
    return SourceImages(train, test, IDX_DATASETS[config.name].class_names)
