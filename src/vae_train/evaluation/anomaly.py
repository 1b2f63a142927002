"""Anomaly detection: per-image scores that are high for images unlike the training data, and how
well they separate the normal images from the anomalous ones.

Scores, in nats per image: ``reconstruction`` (the reconstruction loss of the image decoded from
its posterior mean), and for VAEs ``neg_elbo`` and ``nll_iw`` (the Monte Carlo ELBO and the IWAE
bound from the same importance samples, see :mod:`.likelihood`); in a one-class run also
``latent_knn`` and ``latent_mahalanobis``, distances of the codes (see :mod:`.latent_scores`), and
``combined``, a standardized sum of such scores (see :mod:`.combined_score`). For each: the area under
the ROC curve (AUROC), the average precision and the false-positive rate at 95% true positives, by
scikit-learn, with the anomalies as the positive class.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

SCORES = ("reconstruction", "neg_elbo", "nll_iw")
TRUE_POSITIVE_RATE = 0.95  # where the false-positive rate is read
# The unit of the scores that are not in nats, for the histograms' axes.
SCORE_UNITS = {"latent_knn": "code distance", "latent_mahalanobis": "standard deviations",
               "combined": "summed standard scores"}


def false_positive_rate_at(is_anomaly: np.ndarray, scores: np.ndarray, true_positive_rate: float) -> float:
    """The share of normal images flagged when the threshold flags ``true_positive_rate`` of the anomalies."""
    false_positives, true_positives, _ = roc_curve(is_anomaly, scores)
    return float(false_positives[np.searchsorted(true_positives, true_positive_rate, side="left")])


def detection_figures(scores: dict[str, np.ndarray], is_anomaly: np.ndarray) -> dict[str, float]:
    """``anomaly_auroc_<score>``, ``anomaly_ap_<score>`` and ``anomaly_fpr95_<score>`` of each score."""
    figures = {}
    for name, values in scores.items():
        figures[f"anomaly_auroc_{name}"] = float(roc_auc_score(is_anomaly, values))
        figures[f"anomaly_ap_{name}"] = float(average_precision_score(is_anomaly, values))
        figures[f"anomaly_fpr95_{name}"] = false_positive_rate_at(is_anomaly, values, TRUE_POSITIVE_RATE)
    return figures


def score_histograms(scores: dict[str, np.ndarray], is_anomaly: np.ndarray, figures: dict[str, float],
                     title: str):
    """A matplotlib figure: for each score, the histograms of the normal and of the anomalous images."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2 * len(scores), 3.6), dpi=100)
    FigureCanvasAgg(figure)
    for index, (name, values) in enumerate(scores.items()):
        axes = figure.add_subplot(1, len(scores), index + 1)
        finite = np.isfinite(values)
        bins = np.histogram_bin_edges(values[finite], bins=50)
        for chosen, label, colour in ((~is_anomaly, "normal", "tab:blue"), (is_anomaly, "anomalous", "tab:red")):
            axes.hist(values[finite & chosen], bins=bins, density=True, alpha=0.55, color=colour,
                      label=f"{label} ({int(chosen.sum())})")
        axes.set_xlabel(f"{name} ({SCORE_UNITS.get(name, 'nats')})")
        axes.set_title(f"{name}: AUROC {figures[f'anomaly_auroc_{name}']:.3f}", fontsize="medium")
        axes.legend(fontsize="small", frameon=False)
    figure.suptitle(title, fontsize="medium")
    figure.tight_layout()
    return figure


# The scores the per-defect histograms show, those present in this order, at most HISTOGRAM_SCORES of them.
HISTOGRAM_PREFERENCE = ("reconstruction", "l2_top_k", "ssim_top_k", "nll_iw", "l2_mean", "ssim_mean")
HISTOGRAM_SCORES = 3


def defect_histograms(scores: dict[str, np.ndarray], labels: np.ndarray, class_names: tuple[str, ...],
                      figures: dict[str, float], title: str):
    """A matplotlib figure: for a few scores, the histogram of each class of test images (the normal one
    and each defect type), so a defect type the scores miss shows where it overlaps the normal images."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = [name for name in HISTOGRAM_PREFERENCE if name in scores][:HISTOGRAM_SCORES]
    figure = Figure(figsize=(4.6 * len(shown), 3.8), dpi=100)
    FigureCanvasAgg(figure)
    colours = colormaps["tab10"]
    for index, name in enumerate(shown):
        axes = figure.add_subplot(1, len(shown), index + 1)
        values = scores[name]
        bins = np.histogram_bin_edges(values[np.isfinite(values)], bins=40)
        for label in sorted(set(labels.tolist())):
            chosen = labels == label
            axes.hist(values[chosen], bins=bins, density=True, histtype="step", linewidth=1.5,
                      color=colours(label % 10), label=f"{class_names[label]} ({int(chosen.sum())})")
        axes.set_xlabel(name)
        axes.set_title(f"{name}: AUROC {figures.get(f'anomaly_auroc_{name}', float('nan')):.3f}", fontsize="medium")
        axes.legend(fontsize="small", frameon=False)
    figure.suptitle(title, fontsize="medium")
    figure.tight_layout()
    return figure
