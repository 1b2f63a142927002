"""Models: shapes, parameter counts of the reference recipes, the losses, and that they learn."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import IMAGE_SHAPE, PROJECT_ROOT, compose, synthetic_digits
from vae_train.config import GROUP_SCHEMAS, to_settings
from vae_train.errors import ConfigError
from vae_train.models import build_model, register_model, registered_models
from vae_train.models.base import Posterior, bernoulli_nll

MODELS = ["dense_ae", "conv_ae", "cvae", "dense_vae"]


def make_model(name: str, latent_dim: int = 2, *overrides: str):
    settings = to_settings(compose([f"model={name}", f"latent_dim={latent_dim}", *overrides]))
    return build_model(settings.model, settings.latent_dim, IMAGE_SHAPE, seed=0)


def tiny_images(count: int = 16) -> tf.Tensor:
    images, _ = synthetic_digits(count, seed=3)
    return tf.constant(images[..., None] / 255.0, tf.float32)


def test_every_model_is_registered():
    assert set(MODELS) <= set(registered_models())


def test_registry_schema_table_and_model_files_name_the_same_models():
    files = sorted(path.stem for path in (PROJECT_ROOT / "conf" / "model").glob("*.yaml"))
    assert registered_models() == sorted(GROUP_SCHEMAS["model"]) == files
    for name in files:  # each file is its own model, on its own schema
        assert compose([f"model={name}"]).model.name == name


@pytest.mark.parametrize("name", MODELS)
def test_models_take_their_size_from_the_images(name):
    settings = to_settings(compose([f"model={name}", "latent_dim=3"]))
    model = build_model(settings.model, 3, (32, 24, 1), seed=0)
    images = tf.zeros((2, 32, 24, 1))
    assert model(images).shape == (2, 32, 24, 1)
    assert model.pixels == 32 * 24


def test_pinned_conv_layers_that_cannot_reach_the_image_size_name_the_keys():
    settings = to_settings(compose(["model=conv_ae", "model.encoder_filters=[32,64]", "model.decoder_filters=[64,32]"]))
    with pytest.raises(ConfigError, match="30x30 images") as excinfo:
        build_model(settings.model, 2, (30, 30, 1), seed=0)
    assert "model.decoder_filters" in str(excinfo.value) and "data.image_size" in str(excinfo.value)


def test_an_encoder_deeper_than_the_images_allow_names_the_key():
    settings = to_settings(compose(["model=conv_ae", "model.encoder_filters=[8,8,8,8,8]", "model.decoder_filters=[8]"]))
    with pytest.raises(ConfigError, match="model.encoder_filters has 5 downsampling layers"):
        build_model(settings.model, 2, (8, 8, 1), seed=0)


@pytest.mark.parametrize(("side", "layers"), [(28, 2), (30, 1), (32, 2), (64, 3), (128, 4), (256, 5)])
def test_the_conv_layers_follow_the_image_size_when_left_null(side, layers):
    from vae_train.models.conv_ae import conv_layout

    layout = conv_layout(to_settings(compose(["model=cvae"])).model, (side, side, 3))
    assert len(layout.encoder_filters) == len(layout.decoder_filters) == layers
    assert layout.decoder_start[0] * 2 ** layers == side
    assert max(layout.decoder_start[:2]) <= 8 or side % 2 ** (layers + 1)  # halved as far as it goes


# 32x32 in the default run; the larger sizes (about 10 s each) in make test-slow.
@pytest.mark.parametrize("side", [32, *(pytest.param(side, marks=pytest.mark.slow) for side in (64, 128, 256))])
@pytest.mark.parametrize("name", ["dense_ae", "conv_ae", "cvae", "iwae", "dense_vae"])
def test_every_model_trains_on_colour_images_of_its_size(name, side):
    settings = to_settings(compose([f"model={name}", "latent_dim=4"]))
    model = build_model(settings.model, 4, (side, side, 3), seed=0)
    images = tf.random.stateless_uniform((2, side, side, 3), seed=(0, side))
    assert model(images).shape == (2, side, side, 3)
    optimizer = keras.optimizers.Adam(1e-3)

    def objective_on_fixed_noise() -> float:
        noise = tf.random.Generator.from_seed(0)  # the same posterior draws before and after
        return float(tf.reduce_mean(model.loss_terms(images, training=True, noise=noise)["objective"]))

    before = objective_on_fixed_noise()
    for _ in range(5):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss_terms(images, training=True)["objective"])
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables,
                                      strict=True))
    after = objective_on_fixed_noise()
    assert np.isfinite(after) and after < before


@pytest.mark.parametrize("name", MODELS)
def test_shapes(name):
    model = make_model(name, 5)
    images = tiny_images(4)
    posterior = model.posterior(images)
    assert posterior.mean.shape == (4, 5)
    assert (posterior.log_variance is not None) == model.variational
    assert model.decode(posterior.mean).shape == (4, 28, 28, 1)
    assert model(images).shape == (4, 28, 28, 1)
    terms = model.loss_terms(images, training=True)
    assert {name: t.shape for name, t in terms.items()} == {"loss": (4,), "reconstruction": (4,), "kl": (4,),
                                                            "objective": (4,)}


# Expected counts worked out by hand from the layer shapes in shared/reference/seed-models.md.
@pytest.mark.parametrize(
    ("name", "latent_dim", "overrides", "encoder", "decoder"),
    [
        # C, the Keras VAE example: the conv autoencoder's layers with a Dense(16).
        ("cvae", 2, ["model.hidden_units=[16]", "model.decoder_hidden_units=[]"], 69_076, 65_089),
        # A, the TensorFlow tutorial: valid padding, no dense layer, a 7x7x32 decoder start.
        ("cvae", 2, ["model.encoder_padding=valid", "model.hidden_units=[]", "model.decoder_hidden_units=[]",
                     "model.decoder_start_channels=32"], 28_036, 41_953),
        # B, the Hands-On ML stacked autoencoder, 784-100-30-100-784.
        ("dense_ae", 30, ["model.hidden_units=[100]", "model.activation=selu", "model.code_activation=selu"],
         81_530, 82_284),
    ],
    ids=["recipe_C", "recipe_A", "recipe_B"],
)
def test_reference_recipe_parameter_counts(name, latent_dim, overrides, encoder, decoder):
    model = make_model(name, latent_dim, *overrides)
    assert model.parameter_counts() == {"encoder": encoder, "decoder": decoder}


def test_encoder_and_decoder_are_plain_keras_models():
    model = make_model("cvae")
    assert isinstance(model.encoder, keras.Model) and isinstance(model.decoder, keras.Model)
    assert [layer.name for layer in model.encoder.layers[-2:]] == ["z_mean", "z_log_var"]
    assert all(isinstance(layer, keras.layers.Layer) and type(layer).__module__.startswith("keras.")
               for part in (model.encoder, model.decoder) for layer in part.layers)


def test_bernoulli_loss_is_summed_binary_cross_entropy_in_nats():
    rng = np.random.default_rng(0)
    images = (rng.random((3, 28, 28, 1)) > 0.5).astype(np.float32)
    logits = rng.normal(size=(3, 28, 28, 1)).astype(np.float32)
    probabilities = 1 / (1 + np.exp(-logits))
    expected = -(images * np.log(probabilities) + (1 - images) * np.log(1 - probabilities)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(bernoulli_nll(tf.constant(images), tf.constant(logits)).numpy(), expected, rtol=1e-5)


def test_analytic_kl_matches_monte_carlo():
    mean = tf.constant([[0.5, -1.0, 0.0]])
    log_variance = tf.constant([[0.3, -0.7, 0.0]])
    analytic = Posterior(mean, log_variance).kl_to_standard_normal().numpy()[0]
    # E_q[log q(z) - log p(z)] by sampling.
    noise = tf.random.Generator.from_seed(1)
    z = mean + tf.exp(0.5 * log_variance) * noise.normal((200_000, 3))
    log_q = -0.5 * (tf.square(z - mean) / tf.exp(log_variance) + log_variance)
    log_p = -0.5 * tf.square(z)
    monte_carlo = float(tf.reduce_mean(tf.reduce_sum(log_q - log_p, axis=-1)))
    assert analytic == pytest.approx(monte_carlo, abs=0.01)
    assert Posterior(tf.zeros((2, 4)), tf.zeros((2, 4))).kl_to_standard_normal().numpy().tolist() == [0.0, 0.0]


def test_autoencoder_has_no_kl_and_vae_weighs_it_by_beta():
    images = tiny_images(8)
    ae_terms = make_model("conv_ae").loss_terms(images)
    assert np.all(ae_terms["kl"].numpy() == 0)
    np.testing.assert_array_equal(ae_terms["loss"].numpy(), ae_terms["reconstruction"].numpy())
    vae = make_model("cvae", 2, "model.beta=4.0")
    terms = vae.loss_terms(images)
    np.testing.assert_allclose(terms["loss"], terms["reconstruction"] + 4.0 * terms["kl"], rtol=1e-6)
    assert np.all(terms["kl"].numpy() > 0)


def test_mse_option_changes_the_reconstruction_loss():
    images = tiny_images(4)
    model = make_model("dense_ae", 2, "model.reconstruction_loss=mse")
    logits = model(images)
    expected = tf.reduce_sum(tf.square(tf.sigmoid(logits) - images), axis=[1, 2, 3])
    np.testing.assert_allclose(model.loss_terms(images)["reconstruction"], expected, rtol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_loss_decreases_over_a_few_steps(name):
    keras.utils.set_random_seed(0)
    model = make_model(name)
    optimizer = keras.optimizers.Adam(1e-3)
    images = tiny_images(32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss_terms(images, training=True)["loss"])
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                      model.trainable_variables, strict=True))
        return loss

    losses = [float(step()) for _ in range(30)]
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])


def test_registry_refuses_a_taken_name():
    with pytest.raises(ValueError, match="cvae"):
        register_model("cvae")(type("Impostor", (), {}))


def test_unknown_model_name_lists_the_registered_ones():
    settings = to_settings(compose())
    settings.model.name = "nope"
    with pytest.raises(ConfigError, match="conv_ae, cvae, dense_ae"):
        build_model(settings.model, 2, IMAGE_SHAPE, seed=0)
