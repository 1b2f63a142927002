"""The evaluation key: pictures, extra test figures, the likelihood bound and the end-of-run analyses."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from enum import Enum

from vae_train.config.schema.common import require, require_interval, require_positive


class ManifoldKind(Enum):
    """Where the manifold picture's grid of latent points lies (latent_dim 2)."""

    quantiles = "quantiles"  # evenly spaced quantiles of N(0, 1) on each axis (recipe A)
    square = "square"  # evenly spaced points of an interval on each axis (recipe C)


class Projection(Enum):
    """How the latent scatter shows codes of more than two dimensions."""

    pca = "pca"  # onto the two principal components
    first_two = "first_two"  # the first two coordinates


class Interpolation(Enum):
    """How the interpolation pictures walk between two codes."""

    linear = "linear"
    slerp = "slerp"  # spherical: along the great circle, as suits codes drawn from a Gaussian prior


class AnomalyMap(Enum):
    """A per-pixel anomaly map of a test image against its reconstruction, summed over channels."""

    l2 = "l2"  # the squared reconstruction error
    ssim = "ssim"  # 1 - local SSIM (AE-SSIM, Bergmann et al. 2019)


class CombinedPart(Enum):
    """A score the one-class ``combined`` score sums, each standardized on the normal training images."""

    reconstruction = "reconstruction"
    latent_knn = "latent_knn"
    latent_mahalanobis = "latent_mahalanobis"


class Clustering(Enum):
    """How the codes' figures cluster the test codes, one cluster per class, without their labels."""

    kmeans = "kmeans"  # k-means on the codes themselves
    # k-means, and a Gaussian mixture on a UMAP embedding of the codes (pip install 'vae-train[umap]')
    umap_gmm = "umap_gmm"


def umap_installed() -> bool:
    """Whether umap-learn can be imported, without importing it (numba compiles on import)."""
    return importlib.util.find_spec("umap") is not None


class ExtraMetric(Enum):
    """Test-set figures some recipes define besides the losses, reported under their own names."""

    rounded_accuracy = "rounded_accuracy"  # share of pixels with round(image) == round(reconstruction) (B)


@dataclass
class ManifoldConfig:
    kind: ManifoldKind = ManifoldKind.quantiles
    size: int = 20  # points per axis; 0: no manifold picture
    # The probabilities (quantiles) or coordinates (square) spanned on each axis.
    quantile_range: list[float] = field(default_factory=lambda: [0.05, 0.95])
    square_range: list[float] = field(default_factory=lambda: [-2.0, 2.0])

    def __post_init__(self) -> None:
        require(self.size >= 0, f"evaluation.manifold.size must be >= 0, got {self.size}.")
        require_interval(self.quantile_range, "evaluation.manifold.quantile_range", within=(0.0, 1.0))
        require_interval(self.square_range, "evaluation.manifold.square_range")


@dataclass
class EvaluationConfig:
    """Pictures in TensorBoard, extra test figures, and the importance-weighted likelihood."""

    # Pictures after every N epochs and after the last.
    every_n_epochs: int = 1
    # The test figures (the test loss and its terms, TensorBoard's test curves) after every N epochs and after
    # the last, as Keras' validation_freq; more than 1 saves their cost in long runs (a test pass each time).
    test_every_n_epochs: int = 1
    # Test images shown above their reconstructions; 0: none.
    reconstructions: int = 8
    # VAEs: decodings of this many fixed draws from the prior; 0: none.
    samples: int = 16
    # latent_dim 2: a size x size grid of decodings.
    manifold: ManifoldConfig = field(default_factory=ManifoldConfig)
    # latent_dim > 2: the latent scatter shows a 2-D projection.
    projection: Projection = Projection.pca
    # Test images encoded for the latent scatter and the projector; null: all, 0: neither.
    code_examples: int | None = None
    # Test-set codes with labels and a sprite for TensorBoard's embedding projector.
    projector: bool = True
    # Weight and gradient histograms.
    histograms: bool = False
    # VAEs: importance samples per test image for the likelihood bound test_nll_iw; 0: off.
    iw_samples: int = 50
    # Extra test figures.
    metrics: list[ExtraMetric] = field(default_factory=list)
    # At the end of a run: the codes' worth (probe, k-NN, k-means) beside PCA's at the same size.
    representation: bool = True
    # Training images encoded for the probe, k-NN and PCA; null: all.
    representation_examples: int | None = None
    # Neighbours of the k-NN classifier, and of the latent_knn anomaly score.
    knn_k: int = 5
    # The clustering of the test codes: kmeans, or umap_gmm (k-means and a Gaussian mixture on their UMAP
    # embedding; needs umap-learn).
    clustering: Clustering = Clustering.kmeans
    # Pairs of test images of different classes interpolated between; 0: none.
    interpolations: int = 4
    # Decodings per interpolation, the two images' own reconstructions included.
    interpolation_steps: int = 10
    # linear or slerp; null: slerp for VAEs (a Gaussian prior), linear for autoencoders.
    interpolation: Interpolation | None = None
    # Latent dimensions traversed, those the codes vary most along first; null: min(latent_dim, 10); 0: none.
    traversal_dims: int | None = None
    # Decodings per traversal, over +-3 prior standard deviations around the code.
    traversal_steps: int = 11
    # Per-pixel anomaly maps of the test images (l2, ssim, or both): image scores from each map (its mean,
    # max and the mean of its top evaluation.anomaly_top_k share of pixels) and, where the data set has
    # defect masks, pixel AUROC and PRO. null: both for an inspection data set (data=mvtec), else none.
    anomaly_map: list[AnomalyMap] | None = None
    # A Gaussian blur of each map, in pixels; 0: none.
    anomaly_map_sigma: float = 0.0
    # The share of a map's pixels whose mean is the top_k image score, in (0, 1].
    anomaly_top_k: float = 0.01
    # One-class runs: the score `combined`, the sum of these scores, each standardized by its mean and
    # standard deviation over the normal training images; [] or null: none.
    anomaly_combined: list[CombinedPart] | None = field(
        default_factory=lambda: [CombinedPart.reconstruction, CombinedPart.latent_knn])
    # The anomaly threshold: this quantile of the normal validation images' scores; the test F1 at it is reported.
    anomaly_quantile: float = 0.99

    def __post_init__(self) -> None:
        require_positive(self.every_n_epochs, "evaluation.every_n_epochs")
        require_positive(self.test_every_n_epochs, "evaluation.test_every_n_epochs")
        require(self.knn_k > 0, f"evaluation.knn_k must be a positive number of neighbours, got {self.knn_k}.")
        require(self.clustering is not Clustering.umap_gmm or umap_installed(),
                "evaluation.clustering=umap_gmm embeds the codes with UMAP, and umap-learn is not installed in this "
                "Python. Install it with pip install 'vae-train[umap]' (or pip install -e '.[umap]' in a "
                "checkout), or keep evaluation.clustering=kmeans.")
        require(self.interpolation_steps >= 2,
                f"evaluation.interpolation_steps must be >= 2 (both ends), got {self.interpolation_steps}.")
        require(self.traversal_steps >= 2, f"evaluation.traversal_steps must be >= 2, got {self.traversal_steps}.")
        require_positive(self.representation_examples, "evaluation.representation_examples")
        require(0 < self.anomaly_top_k <= 1,
                f"evaluation.anomaly_top_k must be a share of the pixels in (0, 1], got {self.anomaly_top_k}.")
        require(0 < self.anomaly_quantile < 1,
                f"evaluation.anomaly_quantile must be in (0, 1), got {self.anomaly_quantile}.")
        require(self.anomaly_map_sigma >= 0,
                f"evaluation.anomaly_map_sigma must be >= 0 pixels, got {self.anomaly_map_sigma}.")
        parts = self.anomaly_combined or []
        require(len(parts) != 1 and len(set(parts)) == len(parts),
                f"evaluation.anomaly_combined sums two or more different scores (or none: []), got "
                f"{[part.value for part in parts]}; the choices are {[part.value for part in CombinedPart]}.")
        for key in ("reconstructions", "samples", "code_examples", "iw_samples", "interpolations", "traversal_dims"):
            value = getattr(self, key)
            require(value is None or value >= 0, f"evaluation.{key} must be >= 0, got {value}.")
