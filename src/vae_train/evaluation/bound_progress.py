"""A long likelihood bound's progress on disk. A K = 5000 bound of the conv VAE on MNIST's test set
decodes 50 million images, hours on a small machine and more than a scheduler's time limit may give;
its parts are saved as they finish, so a stopped evaluation resumes where it was and ends with the
figures an uninterrupted one gives."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vae_train.files import replace_atomically, shown_path

log = logging.getLogger(__name__)


def progress_file(folder: Path, num_samples: int) -> Path:
    """The progress file of a K-sample bound in ``folder``. K is in its name, so a quick bound with
    another K, run meanwhile, does not replace a long one's progress."""
    return Path(folder) / f"nll_iw_K{num_samples}.progress.npz"


def bound_fingerprint(weights: list[np.ndarray], pixels: np.ndarray, num_samples: int, seed: int,
                      batch_size: int) -> str:
    """What the saved figures depend on: the model's weights, the test images and their batches, K and
    the seed. A progress file of another fingerprint is another bound's."""
    digest = hashlib.sha256(f"K={num_samples} seed={seed} batch={batch_size}".encode())
    for array in (*weights, pixels):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@dataclass
class BoundProgress:
    """The per-image figures of the images done, in order, and the state of the noise at the start of
    the batch holding the next image: a batch's samples are drawn together, even when it is bounded in
    slices."""

    path: Path
    fingerprint: str
    neg_elbo: list[np.ndarray] = field(default_factory=list)
    nll_iw: list[np.ndarray] = field(default_factory=list)
    noise_state: np.ndarray | None = None
    _warned: bool = False

    @property
    def images_done(self) -> int:
        return sum(len(part) for part in self.nll_iw)

    @classmethod
    def resume(cls, path: Path, fingerprint: str) -> BoundProgress:
        """The progress saved in ``path`` for this bound; none (a start from the first image) when the file
        is missing, is another bound's, or does not read."""
        progress = cls(Path(path), fingerprint)
        try:
            with np.load(path) as saved:
                if str(saved["fingerprint"]) != fingerprint:
                    log.info("%s is the progress of another bound (another checkpoint, test set, K or seed): "
                             "this one starts from the first image and replaces it.", shown_path(path))
                    return progress
                progress.neg_elbo, progress.nll_iw = [saved["neg_elbo"]], [saved["nll_iw"]]
                progress.noise_state = saved["noise_state"]
        except FileNotFoundError:
            return progress
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            log.warning("%s does not read (%s): the bound starts from the first image and replaces it.",
                        shown_path(path), err)
            return cls(Path(path), fingerprint)
        log.info("The bound resumes from %s: %d images done.", shown_path(path), progress.images_done)
        return progress

    def add(self, neg_elbo: np.ndarray, nll_iw: np.ndarray, noise_state: np.ndarray) -> None:
        """A finished part's figures, and the noise's state for the next part; saved at once."""
        self.neg_elbo.append(neg_elbo)
        self.nll_iw.append(nll_iw)
        self.noise_state = noise_state
        self._save()

    def _save(self) -> None:
        arrays = {"fingerprint": np.asarray(self.fingerprint), "noise_state": self.noise_state,
                  "neg_elbo": np.concatenate(self.neg_elbo), "nll_iw": np.concatenate(self.nll_iw)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(self.path, lambda partial: np.savez(partial, **arrays))
        except OSError as err:
            # The bound goes on; only a stop before its end would lose the parts since the last save.
            if not self._warned:
                log.warning("The bound's progress cannot be saved in %s (%s): it goes on, but a stop would "
                            "start it again from the last part saved.", shown_path(self.path), err.strerror or err)
                self._warned = True

    def finished(self) -> tuple[np.ndarray, np.ndarray]:
        """Every image's figures; the file is removed, the bound being done."""
        with contextlib.suppress(OSError):  # a read-only folder keeps it: the next call reads it as done
            self.path.unlink(missing_ok=True)
        return np.concatenate(self.neg_elbo), np.concatenate(self.nll_iw)
