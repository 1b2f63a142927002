"""A finished run: the importance-weighted likelihood, the exported models, ``vae-eval`` on a run
folder, and reconstruction errors as anomaly scores."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
from omegaconf import OmegaConf

from conftest import IMAGE_SHAPE, compose, synthetic_digits, tiny_overrides
from vae_train.config import to_settings
from vae_train.data.pipeline import ImagePipelines, InMemoryBatches, load_dataset
from vae_train.evaluation import likelihood
from vae_train.evaluation.bound_progress import BoundProgress, progress_file
from vae_train.evaluation.codes import reconstruction_errors
from vae_train.evaluation.likelihood import importance_weighted_nll, per_image_bounds
from vae_train.launch.eval_cli import main as vae_eval_main
from vae_train.launch.eval_cli import run_settings
from vae_train.run.evaluate import evaluate_run, restore_model
from vae_train.run.train import train


@pytest.fixture(scope="module")
def vae(finished_run):
    run_dir, _ = finished_run
    model, _ = restore_model(run_settings(run_dir, []), run_dir, IMAGE_SHAPE)
    return model


@pytest.fixture(scope="module")
def test_batches(tiny_data_dir) -> tf.data.Dataset:
    """The 64 test images in two batches of 32, as the run evaluated them."""
    settings = to_settings(compose(tiny_overrides(tiny_data_dir)))
    return ImagePipelines(load_dataset(settings.data), settings.data, seed=0).test()


# --- the importance-weighted likelihood --------------------------------------------------------


def test_log_weights_are_the_joint_over_the_posterior_and_their_mean_the_elbo(vae, test_batches):
    """Each log weight is log p(x|z) + log p(z) - log q(z|x), the densities computed here with SciPy;
    the decoder's term is the loss's on the same noise; and over the draws the sampled KL,
    log q(z|x) - log p(z), averages to the analytic one, so the log weights' mean estimates the ELBO."""
    images = next(iter(test_batches))[:16]
    draws = 100
    epsilon = tf.random.Generator.from_seed(3).normal([draws, 16, 2])
    log_weights = vae.log_importance_weights(images, epsilon).numpy()
    terms = vae.loss_terms(tf.tile(images, [draws, 1, 1, 1]), noise=tf.random.Generator.from_seed(3))
    reconstruction, analytic_kl = tf.reshape(terms["reconstruction"], [draws, 16]).numpy(), terms["kl"][:16].numpy()

    posterior = vae.posterior(images)
    mean, std = posterior.mean.numpy(), np.exp(0.5 * posterior.log_variance.numpy())
    z = mean + std * epsilon.numpy()
    sampled_kl = (scipy.stats.norm.logpdf(z, mean, std) - scipy.stats.norm.logpdf(z)).sum(axis=-1)
    np.testing.assert_allclose(log_weights, -reconstruction - sampled_kl, rtol=1e-5, atol=1e-3)

    standard_error = sampled_kl.std(axis=0) / np.sqrt(draws)
    assert np.all(np.abs(sampled_kl.mean(axis=0) - analytic_kl) < 4 * standard_error)
    elbo = -(reconstruction.mean(axis=0) + analytic_kl)
    np.testing.assert_allclose(log_weights.mean(axis=0), elbo, rtol=0.01)


def test_one_sample_estimate_matches_minus_elbo(vae, test_batches):
    # Both estimate -ELBO of the 64 test images, one with the Monte Carlo KL and one with the analytic:
    # over 20 draws each their means agree (one draw over 64 images spreads by ~4 nats).
    estimate = importance_weighted_nll(vae, test_batches.repeat(20), 1, seed=0)  # each pass new noise
    images = tf.concat(list(test_batches), axis=0)
    losses = vae.loss_terms(tf.tile(images, [20, 1, 1, 1]), noise=tf.random.Generator.from_seed(1))["loss"]
    assert estimate == pytest.approx(float(tf.reduce_mean(losses)), rel=0.005)


def test_estimate_tightens_as_samples_grow_and_stays_below_minus_elbo(vae, test_batches):
    first_batch = test_batches.take(1)
    nll = {k: importance_weighted_nll(vae, first_batch, k, seed=0) for k in (1, 10, 50, 100)}
    assert nll[100] < nll[10] < nll[1]
    assert nll[50] <= nll[1]
    images = next(iter(first_batch))
    terms = vae.loss_terms(tf.tile(images, [50, 1, 1, 1]), noise=tf.random.Generator.from_seed(1))
    minus_elbo = float(tf.reduce_mean(terms["reconstruction"] + terms["kl"]))  # over 50 draws per image
    assert nll[50] < minus_elbo
    assert importance_weighted_nll(vae, first_batch, 10, seed=0) == nll[10]  # seeded


def test_estimate_does_not_depend_on_the_chunk_size(vae, test_batches):
    first_batch = test_batches.take(1)
    whole = importance_weighted_nll(vae, first_batch, 16, seed=0, decodes_per_chunk=16 * 32)  # one pass
    # 3 samples of the 32 images a pass; one sample of 8 of them (4 slices); of 20, then of the last 12
    for decodes in (96, 8, 20):
        assert importance_weighted_nll(vae, first_batch, 16, seed=0, decodes_per_chunk=decodes) == pytest.approx(
            whole, rel=1e-6)


@pytest.mark.parametrize("kind", ["CPU", "GPU"])
def test_the_bound_takes_small_decoder_passes_on_a_cpu_and_large_ones_on_a_gpu(kind, monkeypatch):
    devices = [tf.config.LogicalDevice("/device:CPU:0", "CPU"), tf.config.LogicalDevice(f"/device:{kind}:0", kind)]
    monkeypatch.setattr(tf.config, "list_logical_devices",
                        lambda device_type=None: [d for d in devices if device_type in (None, d.device_type)])
    assert likelihood.decodes_per_pass() == likelihood.DECODES_PER_PASS[kind]
    assert likelihood.DECODES_PER_PASS["GPU"] > likelihood.DECODES_PER_PASS["CPU"]


@pytest.fixture(scope="module")
def test_in_memory(tiny_data_dir) -> InMemoryBatches:
    """The same 64 test images held in memory, as the end-of-run figures bound them, in four batches."""
    settings = to_settings(compose(tiny_overrides(tiny_data_dir)))
    return InMemoryBatches(ImagePipelines(load_dataset(settings.data), settings.data, seed=0).test_batches().pixels, 16)


# Four samples of a batch of 16: a batch per part, four parts.
PART = {"num_samples": 4, "decodes_per_part": 4 * 16}


def test_a_bound_in_parts_gives_the_figures_of_one_call(vae, test_in_memory, tmp_path):
    neg_elbo, nll_iw = per_image_bounds(vae, test_in_memory, 4, seed=0)
    parted = per_image_bounds(vae, test_in_memory, seed=0, progress_folder=tmp_path, **PART)
    np.testing.assert_allclose(parted[0], neg_elbo, rtol=1e-6)
    np.testing.assert_allclose(parted[1], nll_iw, rtol=1e-6)
    assert list(tmp_path.iterdir()) == []  # the progress file goes once the bound is done


class StopAfterASave(Exception):
    pass


def stop_after_saves(monkeypatch, saves: int = 1):
    original, saved = BoundProgress.add, []

    def add_then_stop(self, *arguments):
        original(self, *arguments)
        saved.append(True)
        if len(saved) == saves:
            raise StopAfterASave

    monkeypatch.setattr(BoundProgress, "add", add_then_stop)


def test_the_time_left_follows_the_last_parts_rate():
    # Parts of 100 images every 10 s, one taking 1,000 s (the process stopped a while), then 10 s again.
    now = [0.0]
    time_left = likelihood.TimeLeft(images_done=0, images=10_000, window=4, clock=lambda: now[0])
    told = []
    for part, seconds in enumerate([10] * 3 + [1_000] + [10] * 5, start=1):
        now[0] += seconds
        told.append(time_left.after_part(100 * part))
    assert told[2] == pytest.approx(9_700 * 0.1)  # 0.1 s an image
    assert told[3] > 9_600 * 2  # the slow part counts while it is among the last four
    assert told[-1] == pytest.approx((10_000 - 900) * 0.1)  # and no longer once four parts have passed it


def test_a_stopped_bound_resumes_from_its_last_part(vae, test_in_memory, tmp_path, monkeypatch, caplog):
    expected = per_image_bounds(vae, test_in_memory, 4, seed=0)
    with monkeypatch.context() as patch:
        stop_after_saves(patch)
        with pytest.raises(StopAfterASave):
            per_image_bounds(vae, test_in_memory, seed=0, progress_folder=tmp_path, **PART)
    assert progress_file(tmp_path, 4).is_file()
    bounded = []  # the images each call of the compiled bound gets
    compiled = likelihood._summaries_over_slices
    monkeypatch.setattr(likelihood, "_summaries_over_slices",
                        lambda model, pixels, *rest: bounded.append(len(pixels)) or compiled(model, pixels, *rest))
    with caplog.at_level(logging.INFO, logger="vae_train.evaluation.bound_progress"):
        resumed = per_image_bounds(vae, test_in_memory, seed=0, progress_folder=tmp_path, **PART)
    assert "16 images done" in caplog.text
    assert bounded == [16, 16, 16]  # the batches after the first
    np.testing.assert_allclose(resumed[1], expected[1], rtol=1e-6)
    np.testing.assert_allclose(resumed[0], expected[0], rtol=1e-6)
    assert not progress_file(tmp_path, 4).exists()


# Batches of 16 decoded 4 images a pass: one batch is more than a part of 16 decodes, so the parts are
# slices of 4 images, four a batch, each drawn from the whole batch's noise.
SLICED = {"num_samples": 4, "decodes_per_part": 4 * 4, "decodes_per_chunk": 4}


@pytest.mark.parametrize("saves", [1, 4, 5])  # inside the first batch, at its end, inside the second
def test_a_bound_stopped_inside_a_batch_resumes_from_its_last_slice(vae, test_in_memory, tmp_path, monkeypatch,
                                                                    saves):
    expected = per_image_bounds(vae, test_in_memory, 4, seed=0)
    with monkeypatch.context() as patch:
        stop_after_saves(patch, saves)
        with pytest.raises(StopAfterASave):
            per_image_bounds(vae, test_in_memory, seed=0, progress_folder=tmp_path, **SLICED)
    with np.load(progress_file(tmp_path, 4)) as saved:
        assert len(saved["nll_iw"]) == 4 * saves
    sliced = []  # the images of its batch each call of the compiled bound gets
    compiled = likelihood._summaries_within_batch
    monkeypatch.setattr(likelihood, "_summaries_within_batch",
                        lambda model, pixels, begin, end, *rest: sliced.append((int(begin), int(end)))
                        or compiled(model, pixels, begin, end, *rest))
    resumed = per_image_bounds(vae, test_in_memory, seed=0, progress_folder=tmp_path, **SLICED)
    assert len(sliced) == 16 - saves and sliced[0] == (4 * saves % 16, 4 * saves % 16 + 4)
    np.testing.assert_allclose(resumed[1], expected[1], rtol=1e-6)
    np.testing.assert_allclose(resumed[0], expected[0], rtol=1e-6)


def test_a_part_is_whole_batches_or_whole_decoder_passes_of_one():
    images_per_part = likelihood._images_per_part
    assert images_per_part(4, 16, 128, decodes_per_part=4 * 16 * 3) == 48  # three batches of 16
    # K = 5000 on MNIST's batches of 512: a CPU's passes of 128 images, a GPU's whole batch
    assert images_per_part(5000, 512, 128, likelihood.DECODES_PER_PART) == 128
    assert images_per_part(5000, 512, 2048, likelihood.DECODES_PER_PART) == 512
    assert images_per_part(100, 512, 128, likelihood.DECODES_PER_PART) == 20 * 512  # 1,024,000 decodes


def test_another_bounds_or_an_unreadable_progress_file_is_not_used(vae, test_in_memory, tmp_path, monkeypatch,
                                                                   caplog):
    expected = per_image_bounds(vae, test_in_memory, 4, seed=0)
    with monkeypatch.context() as patch:  # seed 1's first part, in the file seed 0's bound reads
        stop_after_saves(patch)
        with pytest.raises(StopAfterASave):
            per_image_bounds(vae, test_in_memory, seed=1, progress_folder=tmp_path, **PART)
    with caplog.at_level(logging.INFO, logger="vae_train.evaluation.bound_progress"):
        np.testing.assert_allclose(per_image_bounds(vae, test_in_memory, seed=0, progress_folder=tmp_path, **PART)[1],
                                   expected[1], rtol=1e-6)
    assert "the progress of another bound" in caplog.text
    progress_file(tmp_path, 4).write_bytes(b"PK\x03\x04 cut short")
    with caplog.at_level(logging.WARNING, logger="vae_train.evaluation.bound_progress"):
        np.testing.assert_allclose(per_image_bounds(vae, test_in_memory, seed=0, progress_folder=tmp_path, **PART)[1],
                                   expected[1], rtol=1e-6)
    assert "does not read" in caplog.text


def test_results_report_the_likelihood_bound(finished_run):
    _, results = finished_run
    assert results["iw_samples"] == 20
    assert results["test_nll_iw"] < -results["test_elbo"]


# --- the exported models -----------------------------------------------------------------------


LOADER = textwrap.dedent("""
    import sys

    class RefuseVaeTrain:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "vae_train":
                raise ImportError("the export must load without vae_train")

    sys.meta_path.insert(0, RefuseVaeTrain())
    import keras
    import numpy as np

    export, work = sys.argv[1:]
    encoder = keras.saving.load_model(f"{export}/encoder.keras")
    decoder = keras.saving.load_model(f"{export}/decoder.keras")
    mean, log_variance = encoder.predict(np.load(f"{work}/images.npy"), verbose=0)
    np.save(f"{work}/mean.npy", mean)
    np.save(f"{work}/probabilities.npy", decoder.predict(mean, verbose=0))
    assert "vae_train" not in sys.modules
    print("loaded", encoder.name, decoder.name)
""")


def test_export_loads_with_plain_keras_in_a_python_without_the_package(finished_run, vae, tmp_path):
    run_dir, _ = finished_run
    images = synthetic_digits(5, seed=9)[0][..., None].astype(np.float32) / 255.0
    np.save(tmp_path / "images.npy", images)
    result = subprocess.run([sys.executable, "-c", LOADER, str(run_dir / "export"), str(tmp_path)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded encoder decoder" in result.stdout
    mean = vae.posterior(tf.constant(images)).mean
    np.testing.assert_allclose(np.load(tmp_path / "mean.npy"), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "probabilities.npy"), tf.sigmoid(vae.decode(mean)),
                               rtol=1e-5, atol=1e-6)


# --- vae-eval ----------------------------------------------------------------------------------


def test_vae_eval_command_writes_metrics_pictures_and_codes(finished_run, tmp_path):
    run_dir, results = finished_run
    output = tmp_path / "eval"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-m", "vae_train.launch.eval_cli", str(run_dir), "--encode", "test",
                             "--encode", "train", "--output", str(output)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Evaluated" in result.stderr and "unrestored" not in result.stderr

    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["epoch"] == 3 and metrics["steps"] == results["steps"] == 12
    assert metrics["checkpoint"].endswith("ckpt-12")
    # The same checkpoint, batches and seed give the training run's own test figures.
    for key in ("test_loss", "test_reconstruction", "test_kl", "test_elbo", "test_nll_iw"):
        assert metrics[key] == pytest.approx(results[key], rel=1e-5), key
    assert metrics["iw_samples"] == 20 and metrics["test_images"] == 64

    pictures = {path.stem: tf.io.decode_png(tf.io.read_file(str(path))).numpy() for path in output.glob("*.png")}
    assert set(pictures) == {"reconstructions", "samples", "manifold", "interpolations", "traversals",
                             "latent_scatter"}
    assert pictures["reconstructions"].shape == (58, 6 * 28 + 5 * 2, 1)
    assert pictures["samples"].shape == (3 * 28 + 2 * 2,) * 2 + (1,)
    assert pictures["manifold"].shape == (5 * 28, 5 * 28, 1)
    assert pictures["latent_scatter"].shape == (550, 750, 3)

    assert np.load(output / "codes_test.npy").shape == (64, 2)
    assert np.load(output / "codes_train.npy").shape == (128, 2)
    assert np.load(output / "labels_train.npy").shape == (128,)
    scores = np.load(output / "test_reconstruction_errors.npy")
    assert scores.shape == (64,) and np.all(scores > 0)


def test_vae_eval_applies_overrides_to_the_saved_config(finished_run, tmp_path):
    run_dir, _ = finished_run
    settings = run_settings(run_dir, ["evaluation.iw_samples=0", "evaluation.samples=0"])
    metrics = evaluate_run(settings, run_dir, output=tmp_path)
    assert "test_nll_iw" not in metrics and not (tmp_path / "samples.png").exists()
    assert (tmp_path / "reconstructions.png").exists()


@pytest.mark.parametrize(("case", "expected"), [
    ("missing", "is not a folder"),
    ("not_a_run", "is not a vae-train run folder"),
    ("other_model", "model cvae, latent_dim 2, but this run is model cvae, latent_dim 3"),
    ("other_layers", "Cannot restore"),
    ("no_checkpoint", "has no checkpoint"),
    ("bad_override", "evaluation.nope"),
])
def test_vae_eval_refuses_bad_input_in_one_paragraph(finished_run, tmp_path, capsys, case, expected):
    run_dir, _ = finished_run
    fresh = tmp_path / "fresh"
    (fresh / ".hydra").mkdir(parents=True)
    (fresh / ".hydra" / "config.yaml").write_text((run_dir / ".hydra" / "config.yaml").read_text())
    arguments = {
        "missing": [tmp_path / "nowhere"],
        "not_a_run": [tmp_path],
        "other_model": [run_dir, "latent_dim=3"],
        "other_layers": [run_dir, "model.hidden_units=[8]"],
        "no_checkpoint": [fresh],
        "bad_override": [run_dir, "evaluation.nope=1"],
    }[case]
    with pytest.raises(SystemExit) as exit_info:
        vae_eval_main([*map(str, arguments), "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("vae-eval: ") and expected in error
    assert len(error.splitlines()) == 1  # one paragraph
    assert not (tmp_path / "out").exists()


def test_vae_eval_help_does_not_import_tensorflow():
    code = ("import sys; from vae_train.launch.eval_cli import parse_args\n"
            "try: parse_args(['--help'])\nexcept SystemExit: pass\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--encode" in result.stdout and "metrics.json" in result.stdout


@pytest.mark.parametrize("argv", [
    ["run", "--anomalies", "fashion", "data.root=/d", "evaluation.iw_samples=5", "--gif"],
    ["run", "data.root=/d", "--anomalies", "fashion", "--gif", "evaluation.iw_samples=5"],
    ["--gif", "run", "data.root=/d", "evaluation.iw_samples=5", "--anomalies=fashion"],
])
def test_vae_eval_takes_options_and_overrides_in_any_order(argv):
    from vae_train.launch.eval_cli import parse_args

    args = parse_args(argv)

    assert (args.run_dir, args.overrides) == (Path("run"), ["data.root=/d", "evaluation.iw_samples=5"])
    assert (args.anomalies, args.gif) == ("fashion", True)


# --- anomaly scores ----------------------------------------------------------------------------


def test_reconstruction_errors_flag_images_unlike_the_training_data(tiny_data_dir, tmp_path, test_batches):
    settings = to_settings(compose([*tiny_overrides(tiny_data_dir), "model=dense_ae", "latent_dim=8",
                                    "trainer.epochs=4", "evaluation.code_examples=0"]))
    train(settings, tmp_path)
    model, _ = restore_model(settings, tmp_path, IMAGE_SHAPE)
    normal = reconstruction_errors(model, test_batches)
    anomalies = (np.random.default_rng(0).random((16, 28, 28, 1)) < 0.5).astype(np.float32)  # binary noise
    anomalous = reconstruction_errors(model, tf.data.Dataset.from_tensor_slices(anomalies).batch(16))
    assert normal.shape == (64,) and anomalous.shape == (16,)
    assert anomalous.min() > np.percentile(normal, 99)


def test_saved_config_keys_added_since_take_their_defaults(finished_run, tmp_path):
    run_dir, _ = finished_run
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    del saved["evaluation"]  # as in a run from before the key existed
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(saved, tmp_path / ".hydra" / "config.yaml")
    assert run_settings(tmp_path, []).evaluation.iw_samples == 50
