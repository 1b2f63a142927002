"""The one checksum-verified, cached download every published data set uses, and the md5 checks that
a local copy of its files gets.

A file is fetched once into ``<cache_dir>/<subdir>/`` and verified against its published md5; later
runs find it there (verified again) and do not touch the network. Every mirror is tried before
giving up, and the error then says how to work offline.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from vae_train.errors import DataError


def md5sum(path: str | Path) -> str:
    """The hex md5 digest of the file at ``path``, read in chunks so a large archive costs no memory."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_md5(path: str | Path, expected: str, remedy: str) -> None:
    """Raise a :class:`DataError` naming ``path`` when its md5 is not ``expected``; ``remedy`` ends the
    message with what the user should do about it."""
    actual = md5sum(path)
    if actual != expected:
        raise DataError(f"Checksum mismatch for {path}: md5 {actual}, expected {expected}. {remedy}")


def download(filename: str, mirrors: tuple[str, ...], md5: str, cache_dir: str | Path, subdir: str) -> Path:
    """The path of ``filename`` in ``<cache_dir>/<subdir>/``, downloaded from the first mirror that works
    unless the cache already holds it with the right md5.

    ``mirrors`` are base URLs (ending in ``/``) tried in order, each as ``base + filename``. ``subdir`` is
    the data set's name, the same name a folder under $VAE_TRAIN_DATA has.
    """
    # Keras only for its download cache (resumable retrieval, hash checks, progress bar): imported here
    # because composing a config must not pay for importing TensorFlow.
    from keras.utils import get_file

    cache_dir = Path(cache_dir).expanduser()
    # get_file silently falls back to /tmp/.keras when cache_dir does not exist yet, which would put the
    # download where the next run (or the user) does not look for it.
    cache_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    for base_url in mirrors:
        url = base_url + filename
        try:
            path = get_file(filename, origin=url, file_hash=md5, hash_algorithm="md5",
                            cache_dir=str(cache_dir), cache_subdir=subdir)
            return Path(path)
        except Exception as err:  # get_file raises bare Exception on network failures, ValueError on a bad hash
            failures.append(f"{url}: {err}")

    # Imported here, not at the top: the sources package imports its readers, which import this module.
    from vae_train.data.sources import DATA_ENV_VAR

    raise DataError(
        f"Could not download {filename} of {subdir} from any mirror ({'; '.join(failures) or 'no mirror given'}). "
        f"To work offline, copy the data set's files into a folder and pass data.root=<folder>, or set "
        f"${DATA_ENV_VAR} to a folder holding them in a subfolder named {subdir}/."
    )
