"""Denoising (the corruption group) and anomaly detection (one class trained, the others scored; another
dataset scored against the run's own), on tiny IDX data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import (
    IMAGE_SHAPE,
    compose,
    make_idx_folder,
    synthetic_digits,
    tiny_data_config,
    tiny_overrides,
    write_idx,
)
from vae_train.config import to_settings
from vae_train.data.corruption import corruption_of
from vae_train.data.pipeline import ImagePipelines, load_dataset
from vae_train.data.sources.mnist import SPLIT_FILES
from vae_train.errors import ConfigError, DataError
from vae_train.evaluation.anomaly import detection_figures
from vae_train.models import build_model
from vae_train.run.train import train

CORRUPTIONS = {"gaussian": ["corruption=gaussian", "corruption.std=0.5"],
               "salt_pepper": ["corruption=salt_pepper", "corruption.rate=0.3"],
               "masking": ["corruption=masking", "corruption.rate=0.5"]}


def images(count: int = 16, seed: int = 3) -> tf.Tensor:
    return tf.constant(synthetic_digits(count, seed)[0][..., None] / 255.0, tf.float32)


# --- corruption --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_each_corruption_changes_the_input_within_the_unit_interval_and_is_reproducible(kind):
    corrupt = corruption_of(to_settings(compose(CORRUPTIONS[kind])).corruption)
    clean = images()
    corrupted = corrupt(clean, tf.random.Generator.from_seed(1)).numpy()
    assert corrupted.min() >= 0.0 and corrupted.max() <= 1.0
    changed = np.mean(np.abs(corrupted - clean.numpy()) > 1e-6)
    assert changed > 0.1
    np.testing.assert_array_equal(corrupted, corrupt(clean, tf.random.Generator.from_seed(1)).numpy())
    assert not np.array_equal(corrupted, corrupt(clean, tf.random.Generator.from_seed(2)).numpy())


def test_masking_zeroes_the_rate_of_pixels_and_salt_pepper_sets_them_to_the_extremes():
    clean = tf.fill([8, 28, 28, 1], 0.5)
    masked = corruption_of(to_settings(compose(CORRUPTIONS["masking"])).corruption)(
        clean, tf.random.Generator.from_seed(0)).numpy()
    assert set(np.unique(masked)) == {0.0, 0.5} and np.mean(masked == 0) == pytest.approx(0.5, abs=0.03)
    salted = corruption_of(to_settings(compose(CORRUPTIONS["salt_pepper"])).corruption)(
        clean, tf.random.Generator.from_seed(0)).numpy()
    assert set(np.unique(salted)) == {0.0, 0.5, 1.0}
    for extreme in (0.0, 1.0):
        assert np.mean(salted == extreme) == pytest.approx(0.15, abs=0.02)


def test_no_corruption_is_the_identity():
    assert corruption_of(to_settings(compose()).corruption) is None


def test_the_encoder_sees_the_corrupted_input_and_the_reconstruction_is_scored_against_the_clean_image():
    settings = to_settings(compose(["model=dense_ae", "model.hidden_units=[32]"]))
    model = build_model(settings.model, 4, IMAGE_SHAPE, seed=0)
    clean = images()
    corrupted = corruption_of(to_settings(compose(CORRUPTIONS["gaussian"])).corruption)(
        clean, tf.random.Generator.from_seed(0))
    terms = model.loss_terms(clean, inputs=corrupted)
    expected = model.reconstruction_loss(clean, model(corrupted))  # the target: clean
    np.testing.assert_allclose(terms["reconstruction"], expected, rtol=1e-6)
    other_target = model.reconstruction_loss(corrupted, model(corrupted))
    assert not np.allclose(terms["reconstruction"], other_target)


def test_a_denoiser_trained_a_few_epochs_beats_the_identity_and_logs_its_figures(tiny_data_dir, tmp_path):
    results = train(to_settings(compose([
        *tiny_overrides(tiny_data_dir), "model=dense_ae", "model.hidden_units=[64]", "latent_dim=8",
        "trainer.epochs=6", "evaluation.representation=false", *CORRUPTIONS["gaussian"]])), tmp_path)
    # The corrupted input's PSNR against the clean image, and the denoised output's: better.
    assert results["test_denoising_psnr"] > results["test_corrupted_psnr"] + 3.0
    assert np.isfinite(results["test_denoising_loss"])
    from test_pictures import read_pictures
    from test_training import read_scalars

    scalars = read_scalars(tmp_path / "test")
    assert {"denoising/denoising_loss", "denoising/denoising_psnr", "denoising/corrupted_psnr"} <= set(scalars)
    (_, picture), *_ = read_pictures(tmp_path / "test")["denoising"][-1:]
    # Clean, corrupted and denoised rows of the evaluation.reconstructions images, enlarged.
    assert picture.shape[0] * (8 * 28 + 7 * 2) == picture.shape[1] * (3 * 28 + 2 * 2)


def test_corruption_noise_resumes_exactly(tiny_data_dir, tmp_path):
    overrides = [*tiny_overrides(tiny_data_dir), "model=dense_ae", "model.hidden_units=[32]", "trainer.epochs=2",
                 "trainer.deterministic=true", "trainer.checkpoint_every_steps=2", "evaluation.representation=false",
                 "evaluation.iw_samples=0", *CORRUPTIONS["masking"]]
    straight = train(to_settings(compose(overrides)), tmp_path / "straight")
    train(to_settings(compose([*overrides, "trainer.epochs=1"])), tmp_path / "resumed")
    resumed = train(to_settings(compose(overrides)), tmp_path / "resumed")
    for key in ("train_loss", "test_loss", "test_denoising_loss", "test_denoising_psnr"):
        assert resumed[key] == straight[key], key
    signature = json.loads((tmp_path / "resumed" / "checkpoints" / "signature.json").read_text())
    assert signature["corruption"] == "masking"


# --- one class ---------------------------------------------------------------------------------


def test_train_classes_keep_only_those_classes_for_training_and_every_class_for_the_test(tiny_data_dir):
    dataset = load_dataset(tiny_data_config(tiny_data_dir, train_classes=[3, 5]))
    full = load_dataset(tiny_data_config(tiny_data_dir))
    assert set(dataset.train.labels.tolist()) == {3, 5}
    assert len(dataset.train.labels) == int(np.isin(full.train.labels, [3, 5]).sum())
    np.testing.assert_array_equal(dataset.test.labels, full.test.labels)
    # No training batch holds an image of another class.
    allowed = {image.tobytes() for image in full.train.images[np.isin(full.train.labels, [3, 5])]}
    pipelines = ImagePipelines(dataset, tiny_data_config(tiny_data_dir, train_classes=[3, 5], batch_size=4), seed=0)
    for batch in pipelines.train(0):
        for image in np.rint(batch.numpy()[..., 0] * 255).astype(np.uint8):
            assert image.tobytes() in allowed


def test_a_one_class_run_scores_the_other_classes_as_anomalies(tiny_data_dir, tmp_path, monkeypatch):
    import vae_train.run.analyses as analyses

    encoded = []  # the latent scores and the codes' figures share one encoding of each split
    encode_with_images = analyses.encode_with_images
    monkeypatch.setattr(analyses, "encode_with_images",
                        lambda model, batches, *limits: encoded.append(limits) or encode_with_images(model, batches,
                                                                                                     *limits))
    overrides = [*tiny_overrides(tiny_data_dir, batch_size=16), "data.train_classes=[0,1,2,3,4]", "trainer.epochs=2",
                 "evaluation.iw_samples=5"]
    results = train(to_settings(compose(overrides)), tmp_path)
    for score in ("reconstruction", "neg_elbo", "nll_iw", "latent_knn", "latent_mahalanobis", "combined"):
        for figure in ("auroc", "ap", "fpr95"):
            assert 0.0 <= results[f"anomaly_{figure}_{score}"] <= 1.0
    assert len(encoded) == 2 and "probe_accuracy" in results
    from test_pictures import read_pictures
    from test_training import read_scalars

    assert "anomaly/auroc_reconstruction" in read_scalars(tmp_path / "test")
    assert "anomaly_scores" in read_pictures(tmp_path / "test")


def test_auroc_is_one_when_the_scores_separate_and_about_a_half_when_they_do_not():
    rng = np.random.default_rng(0)
    is_anomaly = np.arange(2000) >= 1000
    planted = np.where(is_anomaly, rng.uniform(10, 11, 2000), rng.uniform(0, 1, 2000))
    figures = detection_figures({"planted": planted, "same": rng.normal(size=2000)}, is_anomaly)
    assert figures["anomaly_auroc_planted"] == 1.0 and figures["anomaly_ap_planted"] == 1.0
    assert figures["anomaly_fpr95_planted"] == 0.0
    assert figures["anomaly_auroc_same"] == pytest.approx(0.5, abs=0.04)
    assert figures["anomaly_fpr95_same"] == pytest.approx(0.95, abs=0.03)


def test_vae_eval_scores_another_dataset_as_anomalies(finished_run, tmp_path):
    from vae_train.launch.eval_cli import main as vae_eval_main

    run_dir, _ = finished_run
    other = tmp_path / "other"
    other.mkdir()
    # Anomalies unlike the training images: random binary noise.
    noise = (np.random.default_rng(0).random((64, 28, 28)) < 0.5).astype(np.uint8) * 255
    write_idx(other / SPLIT_FILES["test_images"], noise)
    write_idx(other / SPLIT_FILES["test_labels"], np.zeros(64))
    for key in ("train_images", "train_labels"):
        write_idx(other / SPLIT_FILES[key], noise[:32] if key == "train_images" else np.zeros(32))
    vae_eval_main([str(run_dir), "--anomalies", str(other), "--output", str(tmp_path / "eval")])
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["anomalies"] == str(other)
    assert metrics["anomaly_auroc_reconstruction"] > 0.9 and metrics["anomaly_auroc_nll_iw"] > 0.9
    is_anomaly = np.load(tmp_path / "eval" / "anomaly_is_anomaly.npy")
    assert is_anomaly.sum() == 64 and (~is_anomaly).sum() == 64
    assert np.load(tmp_path / "eval" / "anomaly_scores_reconstruction.npy").shape == (128,)
    assert np.load(tmp_path / "eval" / "anomaly_labels.npy").shape == (128,)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "phrase"), [
    (["corruption=gaussian", "corruption.std=-0.1"], "corruption.std must be >= 0"),
    (["corruption=masking", "corruption.rate=1.5"], r"corruption.rate must be in \[0, 1\]"),
    (["corruption=salt_pepper", "corruption.rate=-1"], r"corruption.rate must be in \[0, 1\]"),
    (["data.train_classes=[]"], "names no class"),
])
def test_out_of_range_settings_are_refused_naming_the_key(overrides, phrase):
    with pytest.raises(ConfigError, match=phrase):
        to_settings(compose(overrides))


def test_unknown_corruption_lists_the_valid_ones():
    with pytest.raises(Exception, match="gaussian") as excinfo:
        compose(["corruption=blur"])
    assert "masking" in str(excinfo.value) and "salt_pepper" in str(excinfo.value)


def test_train_classes_the_dataset_lacks_are_refused_with_its_labels(tiny_data_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"data.train_classes=\[11\] names no class .* labels are 0 to 9"):
        load_dataset(tiny_data_config(tiny_data_dir, train_classes=[11]))
    folder = make_idx_folder(tmp_path / "mnist")
    labels = np.arange(128) % 5  # no image of classes 5..9
    write_idx(folder / SPLIT_FILES["train_labels"], labels)
    with pytest.raises(ConfigError, match=r"data.train_classes=\[7\] leaves no training image"):
        load_dataset(tiny_data_config(folder, train_classes=[7]))


def test_anomalies_of_an_unknown_dataset_or_a_folder_without_images_are_refused(finished_run, tmp_path):
    from vae_train.launch.eval_cli import run_settings
    from vae_train.run.evaluate import other_data_config

    run_dir, _ = finished_run
    settings = run_settings(run_dir, [])
    # mvtec and folder name layouts, not data sets: they need a folder.
    for name in ("nope", "mvtec", "folder"):
        with pytest.raises(ConfigError, match=r"neither a data set \(cifar10, fashion, mnist\) nor a folder"):
            other_data_config(settings, name, (28, 28, 1))
    with pytest.raises(DataError, match="holds no image file"):
        load_dataset(other_data_config(settings, str(tmp_path), (28, 28, 1)))


def test_anomalies_in_a_folder_of_images_are_read_at_the_runs_size(finished_run, tmp_path):
    from PIL import Image

    from vae_train.launch.eval_cli import run_settings
    from vae_train.run.evaluate import other_data_config

    for index in range(3):
        Image.fromarray(np.full((40, 30, 3), 50 * index, np.uint8)).save(tmp_path / f"{index}.png")
    settings = run_settings(finished_run[0], [f"data.cache_dir={tmp_path / 'cache'}"])
    other = load_dataset(other_data_config(settings, str(tmp_path), (28, 28, 1)))
    assert other.image_shape == (28, 28, 1) and len(other.test.images) == 3  # every image is an anomaly
