"""Visual inspection end to end: a tiny category in the MVTec AD layout trained by vae-train, whose
results carry the image figures per defect type, pixel AUROC and PRO, thresholds from the normal
validation images, and whose pictures read back from the event files; and the inspection picture."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import compose
from test_mvtec import category
from test_pictures import read_pictures
from vae_train.config import to_settings
from vae_train.evaluation.inspection import inspection_picture, pictured
from vae_train.run.train import train

MAPS = ("l2", "ssim")


@pytest.fixture(scope="module")
def inspection_run(tmp_path_factory):
    root = category(tmp_path_factory.mktemp("mvtec") / "bottle")
    run_dir = tmp_path_factory.mktemp("inspection_run")
    overrides = ["data=mvtec", f"data.root={root}", f"data.cache_dir={run_dir.parent / 'cache'}",
                 "data.image_size=[16,16]", "data.batch_size=4", "data.validation_fraction=0.2", "model=conv_ae",
                 "trainer.epochs=1", "trainer.progress_bar=false", "evaluation.reconstructions=2",
                 "evaluation.manifold.size=0", "evaluation.interpolations=0", "evaluation.traversal_dims=0"]
    return run_dir, train(to_settings(compose(overrides)), run_dir)


def test_results_carry_image_figures_overall_and_per_defect_type(inspection_run):
    _, results = inspection_run
    for score in ("reconstruction", "l2_mean", "l2_max", "l2_top_k", "ssim_mean", "ssim_top_k"):
        for defect in ("", "_crack", "_scratch"):
            assert 0.0 <= results[f"anomaly_auroc_{score}{defect}"] <= 1.0, (score, defect)
        assert 0.0 <= results[f"anomaly_f1_{score}"] <= 1.0
        assert np.isfinite(results[f"anomaly_threshold_{score}"])


def test_results_carry_pixel_auroc_and_pro_where_masks_exist(inspection_run):
    _, results = inspection_run
    for name in MAPS:
        for defect in ("", "_crack", "_scratch"):
            assert 0.0 <= results[f"anomaly_pixel_auroc_{name}{defect}"] <= 1.0
            assert 0.0 <= results[f"anomaly_pro_{name}{defect}"] <= 1.0


def test_the_inspection_pictures_are_in_the_event_files(inspection_run):
    run_dir, _ = inspection_run
    pictures = {tag.rpartition("/")[2]: events[-1][1] for tag, events in read_pictures(run_dir / "test").items()}
    assert {"anomaly_maps", "anomaly_scores_by_class", "anomaly_scores"} <= set(pictures)
    maps = pictures["anomaly_maps"]
    assert maps.shape[-1] == 3
    # The maps are drawn in a colour map: its rows are not grey.
    assert np.abs(maps[..., 0].astype(int) - maps[..., 2].astype(int)).max() > 50


def test_the_picture_shows_each_defect_type_and_a_normal_image():
    labels = np.array([0, 1, 1, 1, 2, 0, 2])
    shown = pictured(labels, normal_labels=(0,))
    assert shown.tolist() == [1, 2, 4, 6, 0, 5]  # two of each defect type in order of appearance, then normal


def test_the_picture_has_a_row_per_image_kind_map_and_mask():
    images = np.zeros((3, 8, 8, 1), np.float32)
    maps = {"l2": np.random.default_rng(0).random((3, 8, 8)), "ssim": np.zeros((3, 8, 8))}
    picture = inspection_picture(images, images, maps, masks=np.zeros((3, 8, 8, 1), np.uint8))
    padding = 2
    assert picture.shape == (5 * 8 + 4 * padding, 3 * 8 + 2 * padding, 3)  # image, reconstruction, 2 maps, mask
