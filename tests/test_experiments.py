"""The reference recipes as experiments: each pins its recipe and trains; the training objectives
and data splits they need."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from omegaconf import OmegaConf

from conftest import (
    IMAGE_SHAPE,
    PIXELS_PER_IMAGE,
    PROJECT_ROOT,
    compose,
    make_idx_folder,
    synthetic_digits,
    tiny_data_config,
    tiny_overrides,
)
from vae_train.config import DataSplit, Reduction, to_settings
from vae_train.data.pipeline import ImagePipelines, load_dataset
from vae_train.errors import ConfigError, TrainingError
from vae_train.models import build_model
from vae_train.run.train import train

# What each recipe in ../shared/reference/seed-models.md fixes, as config values.
RECIPES = {
    "tf_cvae_tutorial": {
        "data.name": "mnist", "data.binarize": "static", "data.split": "standard", "data.batch_size": 32,
        "model.name": "cvae", "model.encoder_padding": "valid", "model.hidden_units": [],
        "model.decoder_start_channels": 32, "model.kl_reduction": "sum", "model.reconstruction_reduction": "sum",
        "optimizer.name": "adam", "optimizer.learning_rate": 1e-4, "trainer.epochs": 10, "latent_dim": 2,
        "evaluation.samples": 16, "evaluation.manifold.kind": "quantiles", "evaluation.manifold.size": 20,
    },
    "geron_stacked_ae": {
        "data.name": "fashion", "data.binarize": "none", "data.split": "validation", "data.validation_size": 5000,
        "data.batch_size": 32, "model.name": "dense_ae", "model.hidden_units": [100], "model.activation": "selu",
        "model.code_activation": "selu", "model.reconstruction_reduction": "mean", "optimizer.name": "sgd",
        "optimizer.learning_rate": 1.5, "optimizer.momentum": 0.0, "trainer.epochs": 20, "latent_dim": 30,
        "seed": 42, "evaluation.reconstructions": 5, "evaluation.metrics": ["rounded_accuracy"],
    },
    "keras_vae_fashion": {
        "data.name": "fashion", "data.binarize": "none", "data.split": "combined", "data.batch_size": 64,
        "model.name": "cvae", "model.encoder_padding": "same", "model.hidden_units": [16],
        "model.kl_reduction": "mean", "model.reconstruction_reduction": "sum", "optimizer.name": "rmsprop",
        "optimizer.learning_rate": 1e-3, "optimizer.rho": 0.9, "trainer.epochs": 100, "latent_dim": 2,
        "evaluation.manifold.kind": "square", "evaluation.manifold.size": 10,
        "evaluation.manifold.square_range": [-2.0, 2.0],
    },
    "burda_vae": {
        "data.name": "mnist", "data.binarize": "dynamic", "data.split": "standard", "data.batch_size": 20,
        "model.name": "dense_vae", "model.hidden_units": [200, 200], "model.activation": "tanh",
        "model.reconstruction_loss": "bernoulli", "model.train_samples": 1, "optimizer.name": "adam",
        "optimizer.learning_rate": 1e-3, "optimizer.beta_1": 0.9, "optimizer.beta_2": 0.999,
        "optimizer.epsilon": 1e-4, "trainer.epochs": 3280, "latent_dim": 50,
    },
}


def dense(inputs: int, outputs: int) -> int:
    """The parameters of a dense layer: a weight per input and output, a bias per output."""
    return inputs * outputs + outputs


# Burda et al.'s one-stochastic-layer network, counted by hand: 784-200-200 to a 50-unit mean and a
# 50-unit log-variance, and 50-200-200-784 back.
BURDA_ENCODER = dense(784, 200) + dense(200, 200) + 2 * dense(200, 50)  # 157,000 + 40,200 + 2 x 10,050
BURDA_DECODER = dense(50, 200) + dense(200, 200) + dense(200, 784)  # 10,200 + 40,200 + 157,584
# Parameter counts stated by the recipes (encoder, decoder).
PARAMETERS = {"tf_cvae_tutorial": (28_036, 41_953), "geron_stacked_ae": (81_530, 82_284),
              "keras_vae_fashion": (69_076, 65_089), "burda_vae": (BURDA_ENCODER, BURDA_DECODER)}


def _select(values: dict, dotted: str):
    for key in dotted.split("."):
        values = values[key]
    return values


@pytest.mark.parametrize("experiment", RECIPES)
def test_experiment_pins_its_recipe(experiment):
    cfg = compose([f"experiment={experiment}"])
    values = OmegaConf.to_container(cfg, enum_to_str=True)
    for key, expected in RECIPES[experiment].items():
        assert _select(values, key) == expected, key
    settings = to_settings(cfg)
    model = build_model(settings.model, settings.latent_dim, IMAGE_SHAPE, settings.seed)
    assert tuple(model.parameter_counts().values()) == PARAMETERS[experiment]


def test_every_experiment_has_its_recipe_and_counts_here():
    files = {path.stem for path in (PROJECT_ROOT / "conf" / "experiment").glob("*.yaml")}
    assert files == set(RECIPES) == set(PARAMETERS)
    assert (BURDA_ENCODER, BURDA_DECODER) == (217_300, 207_984)


def test_command_line_overrides_win_over_the_experiment():
    cfg = compose(["experiment=keras_vae_fashion", "trainer.epochs=10", "latent_dim=3"])
    assert cfg.trainer.epochs == 10 and cfg.latent_dim == 3 and cfg.optimizer.name == "rmsprop"


@pytest.fixture(scope="module")
def recipe_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipes")
    return {name: make_idx_folder(root / name, train=128, test=64, seed=7) for name in ("mnist", "fashion")}


@pytest.mark.parametrize("experiment", RECIPES)
def test_experiment_trains_one_tiny_step(experiment, recipe_data, tmp_path):
    batch = RECIPES[experiment]["data.batch_size"]
    data_dir = recipe_data[RECIPES[experiment]["data.name"]]
    overrides = [f"experiment={experiment}", *tiny_overrides(data_dir, batch_size=batch),
                 f"data.max_train_examples={batch}", "data.validation_size=32", "evaluation.iw_samples=2",
                 "evaluation.code_examples=16", "evaluation.manifold.size=3"]
    results = train(to_settings(compose(overrides)), tmp_path)

    assert results["steps"] == 1 and np.isfinite(results["test_loss"])
    if experiment == "geron_stacked_ae":  # the recipe's loss is the mean over pixels
        assert results["test_recipe_loss"] == pytest.approx(results["test_loss"] / PIXELS_PER_IMAGE, rel=1e-5)
        assert 0.0 <= results["test_rounded_accuracy"] <= 1.0
    elif experiment == "keras_vae_fashion":  # its KL is averaged over the 2 latent dimensions
        expected = results["test_reconstruction"] + results["test_kl"] / 2
        assert results["test_recipe_loss"] == pytest.approx(expected, rel=1e-5)
    else:  # recipe A optimizes the negative ELBO itself: no figure of its own
        assert "test_recipe_loss" not in results and results["test_loss"] == pytest.approx(-results["test_elbo"])


# --- the training objective --------------------------------------------------------------------


def test_objective_reductions_change_only_what_is_optimized():
    images = tf.constant(synthetic_digits(8, seed=1)[0][..., None] / 255.0, tf.float32)
    settings = to_settings(compose(["model=cvae", "latent_dim=4"]))
    plain = build_model(settings.model, 4, IMAGE_SHAPE, seed=0).loss_terms(
        images, noise=tf.random.Generator.from_seed(1))
    np.testing.assert_array_equal(plain["objective"], plain["loss"])

    settings.model.reconstruction_reduction = Reduction.mean
    settings.model.kl_reduction = Reduction.mean
    settings.model.beta = 2.0
    terms = build_model(settings.model, 4, IMAGE_SHAPE, seed=0).loss_terms(
        images, noise=tf.random.Generator.from_seed(1))
    # The reported terms stay in nats per image; only the objective is rescaled.
    np.testing.assert_allclose(terms["loss"], terms["reconstruction"] + 2.0 * terms["kl"], rtol=1e-6)
    np.testing.assert_allclose(terms["objective"], terms["reconstruction"] / PIXELS_PER_IMAGE + 2.0 * terms["kl"] / 4,
                               rtol=1e-5)


def test_recipe_b_learning_rate_needs_its_mean_over_pixels(tiny_data_dir, tmp_path, tmp_path_factory):
    """SGD at 1.5 is the recipe's setting for a per-pixel mean; on the per-image sum it diverges."""
    overrides = [*tiny_overrides(tiny_data_dir), "model=dense_ae", "model.hidden_units=[100]", "latent_dim=30",
                 "model.activation=selu", "model.code_activation=selu", "optimizer=sgd", "optimizer.momentum=0.0",
                 "optimizer.learning_rate=1.5", "evaluation.code_examples=0", "evaluation.iw_samples=0"]
    results = train(to_settings(compose([*overrides, "model.reconstruction_reduction=mean"])), tmp_path)
    assert np.isfinite(results["test_loss"])
    with pytest.raises(TrainingError, match="non-finite"):
        train(to_settings(compose(overrides)), tmp_path_factory.mktemp("sum"))


# --- data splits -------------------------------------------------------------------------------


def test_validation_split_holds_out_the_last_training_images(tiny_data_dir):
    standard = load_dataset(tiny_data_config(tiny_data_dir))
    held_out = load_dataset(tiny_data_config(tiny_data_dir, split=DataSplit.validation, validation_size=32))
    np.testing.assert_array_equal(held_out.train.images, standard.train.images[:96])
    np.testing.assert_array_equal(held_out.test.images, standard.train.images[96:])
    np.testing.assert_array_equal(held_out.test.labels, standard.train.labels[96:])
    assert ImagePipelines(held_out, tiny_data_config(tiny_data_dir), seed=0).test_size == 32


def test_combined_split_trains_on_training_and_test_images(tiny_data_dir):
    standard = load_dataset(tiny_data_config(tiny_data_dir))
    combined = load_dataset(tiny_data_config(tiny_data_dir, split=DataSplit.combined, max_train_examples=150))
    assert len(combined.train.images) == 150  # the limit applies to the combined set
    np.testing.assert_array_equal(combined.train.images[128:], standard.test.images[:22])
    np.testing.assert_array_equal(combined.train.labels[128:], standard.test.labels[:22])
    np.testing.assert_array_equal(combined.test.images, standard.test.images)


def test_validation_split_larger_than_the_training_set_is_a_config_error(tiny_data_dir):
    with pytest.raises(ConfigError, match="data.validation_size=128"):
        load_dataset(tiny_data_config(tiny_data_dir, split=DataSplit.validation, validation_size=128))
