"""Where a dataset's four IDX files come from: a local folder, or a checksum-verified download.

Adding a dataset in the same format is one :class:`DatasetSpec` in ``DATASETS`` and one YAML
file in ``conf/data/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vae_train.data.idx import md5sum
from vae_train.errors import DataError

# Names a folder of datasets, one subfolder per dataset name (e.g. $VAE_TRAIN_DATA/mnist).
DATA_ENV_VAR = "VAE_TRAIN_DATA"

SPLIT_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    mirrors: tuple[str, ...]  # base URLs, tried in order
    md5: dict[str, str]  # split file key (SPLIT_FILES) -> md5 of the published file
    class_names: tuple[str, ...]


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
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
        DatasetSpec(
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


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"Unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}.") from None


def _verify(path: Path, expected_md5: str, remedy: str) -> None:
    actual = md5sum(path)
    if actual != expected_md5:
        raise DataError(
            f"Checksum mismatch for {path}: md5 {actual}, expected {expected_md5}. {remedy}"
        )


def _cached_files(spec: DatasetSpec, cache_dir: Path) -> dict[str, Path]:
    """Download whatever the cache lacks or holds corrupt, trying each mirror in turn."""
    # Keras only for its download cache: imported here so composing a config stays light.
    from keras.utils import get_file

    # get_file falls back to /tmp/.keras when cache_dir does not exist yet.
    cache_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for key, filename in SPLIT_FILES.items():
        failures = []
        for base_url in spec.mirrors:
            try:
                path = get_file(filename, origin=base_url + filename, file_hash=spec.md5[key],
                                cache_dir=str(cache_dir), cache_subdir=spec.name)
                files[key] = Path(path)
                break
            except Exception as err:  # get_file raises bare Exception on network failures
                failures.append(f"{base_url + filename}: {err}")
        else:
            raise DataError(
                f"Could not download {filename} of {spec.name} ({'; '.join(failures)}). Offline, "
                f"copy the four IDX files into a folder and pass data.root=<folder>, or set "
                f"{DATA_ENV_VAR} to a folder holding one such folder per dataset name."
            )
    return files


def locate_files(
    name: str, root: str | None, cache_dir: str, verify_checksums: bool
) -> dict[str, Path]:
    """Paths of the four IDX files of dataset ``name``, downloading them if no folder is given.

    Order of precedence: ``root``; else ``$VAE_TRAIN_DATA/<name>``; else the download cache.
    """
    spec = get_spec(name)
    if root is None and os.environ.get(DATA_ENV_VAR):
        root = os.path.join(os.environ[DATA_ENV_VAR], name)
    if root is None:
        return _cached_files(spec, Path(cache_dir).expanduser())

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
            _verify(path, spec.md5[key],
                    f"The file is corrupt or not the published {name} file: replace it, or pass "
                    "data.verify_checksums=false to use a modified dataset on purpose.")
    return files
