"""The dense VAE (model=dense_vae): its terms against a hand computation from its weights, and the VAE keys
every VAE's schema shares."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from conftest import compose
from vae_train.config import GROUP_SCHEMAS, VAEConfig, to_settings
from vae_train.errors import ConfigError
from vae_train.models import build_model, get_model_class, registered_models

# A network small enough to write out: 2x2 images, one hidden layer of 3 tanh units, a 2-D code.
IMAGE_SHAPE = (2, 2, 1)
LATENT_DIM = 2


def tiny_dense_vae():
    settings = to_settings(compose(["model=dense_vae", "model.hidden_units=[3]", "model.activation=tanh",
                                    f"latent_dim={LATENT_DIM}"]))
    return build_model(settings.model, LATENT_DIM, IMAGE_SHAPE, seed=0)


def known_weights(model) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Sets every dense layer's kernel and bias to fixed values; returns them by layer name."""
    rng = np.random.default_rng(11)
    chosen = {}
    for part in (model.encoder, model.decoder):
        for layer in part.layers:
            if layer.weights:
                kernel, bias = (np.round(rng.uniform(-1, 1, size=w.shape), 1).astype(np.float32)
                                for w in layer.weights)
                layer.set_weights([kernel, bias])
                chosen[layer.name] = (kernel.astype(np.float64), bias.astype(np.float64))
    return chosen


def test_the_terms_are_those_of_a_hand_computation_from_the_weights():
    model = tiny_dense_vae()
    weights = known_weights(model)
    encoder_hidden, decoder_hidden = (name for name in weights if name.startswith("dense"))
    images = np.array([[0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1]], np.float64)

    def dense(x, name, activation=lambda v: v):
        kernel, bias = weights[name]
        return activation(x @ kernel + bias)

    hidden = dense(images, encoder_hidden, np.tanh)
    mean, log_variance = dense(hidden, "z_mean"), dense(hidden, "z_log_var")
    kl = 0.5 * np.sum(np.exp(log_variance) + mean**2 - 1 - log_variance, axis=1)
    # The sample's noise: the generator's first draw, as the model draws it.
    epsilon = tf.random.Generator.from_seed(5).normal([3, LATENT_DIM]).numpy().astype(np.float64)
    z = mean + np.exp(0.5 * log_variance) * epsilon
    logits = dense(dense(z, decoder_hidden, np.tanh), "logits")
    # Bernoulli -log p(x|z) of the logits: log(1 + e^l) - x l, summed over the pixels.
    reconstruction = np.sum(np.logaddexp(0, logits) - images * logits, axis=1)

    terms = model.loss_terms(tf.constant(images.reshape(3, *IMAGE_SHAPE), tf.float32),
                             noise=tf.random.Generator.from_seed(5))
    np.testing.assert_allclose(terms["kl"], kl, rtol=1e-5)
    np.testing.assert_allclose(terms["reconstruction"], reconstruction, rtol=1e-5)
    np.testing.assert_allclose(terms["loss"], reconstruction + kl, rtol=1e-5)
    np.testing.assert_allclose(terms["objective"], reconstruction + kl, rtol=1e-5)


def test_the_decoder_mirrors_the_encoder():
    model = tiny_dense_vae()
    assert [layer.name for layer in model.encoder.layers[-2:]] == ["z_mean", "z_log_var"]
    encoder_units = [layer.units for layer in model.encoder.layers if hasattr(layer, "units")]
    decoder_units = [layer.units for layer in model.decoder.layers if hasattr(layer, "units")]
    assert encoder_units == [3, LATENT_DIM, LATENT_DIM] and decoder_units == [3, 4]


def test_every_vae_schema_shares_the_vae_keys_and_their_defaults():
    vae_keys = {field.name: field.default for field in dataclasses.fields(VAEConfig)
                if field.name in ("beta", "kl_warmup_steps", "free_bits", "kl_reduction", "train_samples")}
    assert len(vae_keys) == 5
    for name in registered_models():
        schema = GROUP_SCHEMAS["model"][name]
        assert issubclass(schema, VAEConfig) == get_model_class(name).variational, name
        if issubclass(schema, VAEConfig):
            defaults = to_settings(compose([f"model={name}"])).model
            expected = vae_keys | ({"train_samples": 5} if name == "iwae" else {})
            assert {key: getattr(defaults, key) for key in vae_keys} == expected, name


@pytest.mark.parametrize("name", ["dense_vae", "cvae"])
def test_the_vae_keys_check_their_range_whatever_the_network(name):
    with pytest.raises(ConfigError, match="model.free_bits must be >= 0"):
        to_settings(compose([f"model={name}", "model.free_bits=-1"]))
