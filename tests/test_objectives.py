"""The training objectives beyond the plain ELBO: KL warm-up, free bits, the continuous Bernoulli, the
importance-weighted bound of either network (model.train_samples) and the learning-rate schedules."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tensorflow as tf

from conftest import IMAGE_SHAPE, QUIET_EVALUATION, compose, synthetic_digits, tiny_overrides, train_tiny
from vae_train.config import to_settings
from vae_train.errors import ConfigError
from vae_train.models import build_model
from vae_train.models.base import LOG_2PI, Posterior, bernoulli_nll, continuous_bernoulli_log_normalizer
from vae_train.models.terms import TERMS
from vae_train.runtime.precision import ComputePrecision
from vae_train.training.optimizers import build_optimizer


def model_of(*overrides: str, latent_dim: int = 3):
    settings = to_settings(compose(list(overrides)))
    return build_model(settings.model, latent_dim, IMAGE_SHAPE, seed=0)


def images(count: int = 8) -> tf.Tensor:
    return tf.constant(synthetic_digits(count, seed=4)[0][..., None] / 255.0, tf.float32)


def test_kl_warmup_rises_linearly_to_beta():
    model = model_of("model.kl_warmup_steps=100", "model.beta=2.0")
    weights = [float(model.kl_weight_at(step)) for step in (0, 50, 100, 400)]
    assert weights == [0.0, 1.0, 2.0, 2.0]
    assert model_of("model.beta=2.0").kl_weight_at(0) == 2.0  # no warm-up


def test_warmup_changes_the_objective_but_not_the_reported_figures():
    model = model_of("model.kl_warmup_steps=100")
    batch = images()
    early = model.loss_terms(batch, training=True, noise=tf.random.Generator.from_seed(1), step=tf.constant(0))
    late = model.loss_terms(batch, training=True, noise=tf.random.Generator.from_seed(1), step=tf.constant(100))
    np.testing.assert_allclose(early["objective"], early["reconstruction"], rtol=1e-6)  # KL weighed by 0
    np.testing.assert_allclose(late["objective"], late["reconstruction"] + late["kl"], rtol=1e-6)
    np.testing.assert_allclose(early["loss"], early["reconstruction"] + early["kl"], rtol=1e-6)  # the true loss


def test_free_bits_leave_the_gradient_of_a_dimension_below_the_threshold_at_zero():
    model = model_of("model.free_bits=0.5", latent_dim=2)
    mean = tf.Variable([[0.1, 3.0]])  # KL 0.005 nats in dimension 0, 4.5 in dimension 1
    with tf.GradientTape() as tape:
        term = model.kl_objective(Posterior(mean, tf.zeros_like(mean)))
    gradient = tape.gradient(term, mean).numpy()
    assert gradient[0, 0] == 0.0 and gradient[0, 1] == pytest.approx(3.0)
    assert float(term[0]) == pytest.approx(0.5 + 4.5)
    plain = model_of(latent_dim=2).kl_objective(Posterior(mean, tf.zeros_like(mean)))
    assert float(plain[0]) == pytest.approx(0.005 + 4.5)


@pytest.mark.parametrize("logit", [-20.0, -5.0, -0.7, -1e-4, 0.0, 2e-4, 0.3, 4.0, 30.0])
def test_the_continuous_bernoulli_density_integrates_to_one_on_the_unit_interval(logit):
    x = np.linspace(0.0, 1.0, 40_001, dtype=np.float64)
    logits = np.full_like(x, logit)
    cross_entropy = np.maximum(logits, 0) - logits * x + np.log1p(np.exp(-np.abs(logits)))
    log_normalizer = continuous_bernoulli_log_normalizer(tf.constant(logits)).numpy()
    assert np.trapezoid(np.exp(log_normalizer - cross_entropy), x) == pytest.approx(1.0, abs=2e-4)


@pytest.mark.parametrize("logit", [-20.0, -5.0, -0.7, -0.011, -1e-4, 0.0, 2e-4, 0.009, 0.3, 4.0, 30.0])
def test_the_continuous_bernoulli_images_are_its_mean_not_lambda(logit):
    x = np.linspace(0.0, 1.0, 40_001, dtype=np.float64)
    logits = np.full_like(x, logit)
    cross_entropy = np.maximum(logits, 0) - logits * x + np.log1p(np.exp(-np.abs(logits)))
    density = np.exp(continuous_bernoulli_log_normalizer(tf.constant(logits)).numpy() - cross_entropy)
    mean = np.trapezoid(x * density, x) / np.trapezoid(density, x)
    cb = model_of("model.decoder_distribution=continuous_bernoulli")
    assert float(cb.mean_images(tf.constant([logit]))[0]) == pytest.approx(mean, abs=1e-5)
    assert float(model_of().mean_images(tf.constant([logit]))[0]) == pytest.approx(1 / (1 + np.exp(-logit)))


def test_the_continuous_bernoulli_loss_is_the_bernoulli_one_less_its_normalizer():
    cb = model_of("model.decoder_distribution=continuous_bernoulli")
    batch, logits = images(), tf.random.stateless_normal([8, 28, 28, 1], seed=[1, 2])
    normalizer = tf.reduce_sum(continuous_bernoulli_log_normalizer(logits), axis=[1, 2, 3])
    np.testing.assert_allclose(cb.reconstruction_loss(batch, logits), bernoulli_nll(batch, logits) - normalizer,
                               rtol=1e-4)  # float32 sums of 784 terms
    assert cb.has_likelihood


def test_iwae_bound_is_no_looser_than_the_elbo_of_its_samples_and_is_its_objective():
    model = model_of("model=iwae", "model.train_samples=5")
    batch = images()
    terms = model.loss_terms(batch, noise=tf.random.Generator.from_seed(3))
    assert set(terms) == {"loss", "reconstruction", "kl", "iw_bound", "objective"}
    np.testing.assert_array_equal(terms["objective"], terms["iw_bound"])
    epsilon = tf.random.Generator.from_seed(3).normal([5, 8, 3])
    weights, reconstructions = model.importance_samples(batch, epsilon)
    np.testing.assert_allclose(terms["reconstruction"], tf.reduce_mean(reconstructions, axis=0), rtol=1e-5)
    assert np.all(terms["iw_bound"].numpy() <= -tf.reduce_mean(weights, axis=0).numpy() + 1e-4)  # Jensen


@pytest.mark.parametrize("name", ["dense_vae", "cvae"])
def test_the_bound_of_one_sample_is_the_elbo_of_that_sample(name):
    """K = 1: the same draw z as the ELBO's, the same reconstruction, and in place of the analytic KL its
    one-sample estimate log q(z|x) - log p(z), whose mean is the KL."""
    model = model_of(f"model={name}")
    batch = images()
    posterior = model.posterior(batch)
    elbo = model.loss_terms(batch, noise=tf.random.Generator.from_seed(7), posterior=posterior)
    bound = model.importance_weighted_terms(batch, 1, tf.random.Generator.from_seed(7), posterior)
    np.testing.assert_allclose(bound["reconstruction"], elbo["reconstruction"], rtol=1e-6)
    np.testing.assert_allclose(bound["loss"], elbo["loss"], rtol=1e-6)
    epsilon = tf.random.Generator.from_seed(7).normal([8, 3]).numpy().astype(np.float64)
    mean, log_variance = posterior.mean.numpy().astype(np.float64), posterior.log_variance.numpy().astype(np.float64)
    z = mean + np.exp(0.5 * log_variance) * epsilon
    log_q = -0.5 * np.sum(epsilon**2 + LOG_2PI + log_variance, axis=1)
    log_p = -0.5 * np.sum(z**2 + LOG_2PI, axis=1)
    np.testing.assert_allclose(bound["iw_bound"], elbo["reconstruction"].numpy() + log_q - log_p, rtol=1e-5)


@pytest.mark.parametrize(("name", "samples"), [("dense_vae", 5), ("cvae", 50)])
def test_either_network_trains_on_the_bound_of_model_train_samples(name, samples):
    model = model_of(f"model={name}", f"model.train_samples={samples}")
    assert model.reported_terms == (*TERMS, "iw_bound")
    batch = images()
    terms = model.loss_terms(batch, training=True, noise=tf.random.Generator.from_seed(3))
    np.testing.assert_array_equal(terms["objective"], terms["iw_bound"])
    weights, _ = model.importance_samples(batch, tf.random.Generator.from_seed(3).normal([samples, 8, 3]))
    assert np.all(terms["iw_bound"].numpy() <= -tf.reduce_mean(weights, axis=0).numpy() + 1e-4)  # Jensen
    with tf.GradientTape() as tape:
        objective = tf.reduce_mean(model.loss_terms(batch, training=True)["objective"])
    gradients = tape.gradient(objective, model.trainable_variables)
    assert all(gradient is not None and np.all(np.isfinite(gradient)) for gradient in gradients)


@pytest.mark.parametrize("per_pass", [1, 2])  # five passes; or passes of 2, 2 and 1 samples
def test_decoding_a_few_samples_a_pass_gives_the_objective_and_gradients_of_one_pass(per_pass):
    model, batch = model_of("model=cvae", "model.train_samples=5"), images()

    def objective_and_gradients():
        with tf.GradientTape() as tape:
            terms = model.loss_terms(batch, training=True, noise=tf.random.Generator.from_seed(3))
            objective = tf.reduce_mean(terms["objective"])
        return terms, tape.gradient(objective, model.trainable_variables)

    one_pass, one_pass_gradients = objective_and_gradients()
    model.samples_per_decoder_pass = per_pass
    passes, passes_gradients = objective_and_gradients()
    for name in ("objective", "reconstruction", "kl"):
        np.testing.assert_allclose(passes[name], one_pass[name], rtol=1e-5, err_msg=name)
    for expected, gradient in zip(one_pass_gradients, passes_gradients, strict=True):
        np.testing.assert_allclose(gradient, expected, rtol=1e-3, atol=1e-6)


def test_training_on_a_cpu_decodes_one_sample_a_pass_unless_batch_norm_needs_them_together(monkeypatch):
    from vae_train.run import build

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    plain, normalized = (to_settings(compose(["model=cvae", *more])).model for more in ([], ["model.batch_norm=true"]))
    assert build.samples_per_decoder_pass(plain, strategy) == 1
    assert build.samples_per_decoder_pass(normalized, strategy) is None
    monkeypatch.setattr(build, "trains_on_host_cpu", lambda strategy: False)  # GPUs, several replicas
    assert build.samples_per_decoder_pass(plain, strategy) is None


def test_model_iwae_is_the_conv_vae_on_five_samples():
    iwae, cvae = model_of("model=iwae"), model_of("model=cvae")
    assert iwae.config.train_samples == 5 and cvae.config.train_samples == 1 and cvae.reported_terms == TERMS
    assert type(iwae) is type(cvae) and iwae.parameter_counts() == cvae.parameter_counts()


def test_iwae_trains_and_reports_its_bound(tiny_data_dir, tmp_path):
    results = train_tiny(tiny_data_dir, tmp_path, "model=iwae", "model.train_samples=3", "evaluation.iw_samples=5",
                         "evaluation.representation=false")
    assert np.isfinite(results["test_iw_bound"]) and results["test_elbo"] == pytest.approx(-results["test_loss"])


def test_kl_weight_is_logged_as_it_warms_up(tiny_data_dir, tmp_path):
    train_tiny(tiny_data_dir, tmp_path, "model.kl_warmup_steps=8", "trainer.epochs=2", "trainer.log_every_steps=2",
               *QUIET_EVALUATION)
    from test_training import read_scalars

    weights = read_scalars(tmp_path / "train")["optimization/kl_weight"]
    assert [step for step, _ in weights] == [2, 4, 6, 8]
    assert [value for _, value in weights] == pytest.approx([0.25, 0.5, 0.75, 1.0])


@pytest.mark.parametrize(("schedule", "warmup"), [("cosine", 0), ("warmup_cosine", 20)])
def test_schedules_reach_their_end_values(schedule, warmup):
    settings = to_settings(compose([f"optimizer.schedule={schedule}", f"optimizer.warmup_steps={warmup}",
                                    "optimizer.learning_rate=0.01", "optimizer.final_learning_rate_fraction=0.1"]))
    rate = build_optimizer(settings.optimizer, ComputePrecision("float32"), total_steps=100)._learning_rate
    assert float(rate(0)) == pytest.approx(0.0 if warmup else 0.01)
    if warmup:
        assert float(rate(warmup // 2)) == pytest.approx(0.005)
        assert float(rate(warmup)) == pytest.approx(0.01)
    assert float(rate(100)) == pytest.approx(0.001)
    constant = to_settings(compose(["optimizer.learning_rate=0.01"])).optimizer
    assert float(build_optimizer(constant, ComputePrecision("float32"), 100).learning_rate) == pytest.approx(0.01)


def test_a_resumed_run_follows_its_schedule(tiny_data_dir, tmp_path):
    train_tiny(tiny_data_dir, tmp_path, "optimizer.schedule=cosine", "trainer.epochs=1", *QUIET_EVALUATION)
    train_tiny(tiny_data_dir, tmp_path, "optimizer.schedule=cosine", "trainer.epochs=2", *QUIET_EVALUATION)
    from test_training import read_scalars

    rates = dict(read_scalars(tmp_path / "train")["optimization/learning_rate"])
    assert rates[8] == pytest.approx(0.0, abs=1e-9)  # the end of a cosine decay over 8 steps, after the resume


@pytest.mark.parametrize(("overrides", "phrase"), [
    (["model.kl_warmup_steps=-1"], "model.kl_warmup_steps must be >= 0"),
    (["model.free_bits=-0.5"], "model.free_bits must be >= 0"),
    (["model.reconstruction_loss=mse", "model.decoder_distribution=continuous_bernoulli"],
     "model.decoder_distribution=continuous_bernoulli is a likelihood, but model.reconstruction_loss=mse"),
    (["optimizer.schedule=warmup_cosine"], "needs optimizer.warmup_steps > 0"),
    (["model=iwae", "model.train_samples=0"], "model.train_samples must be >= 1"),
    (["model=cvae", "model.train_samples=5", "model.beta=2", "model.kl_warmup_steps=100"],
     "so model.beta=2.0, model.kl_warmup_steps=100 would do nothing"),
    (["model=dense_vae", "model.train_samples=5", "model.reconstruction_loss=mse"],
     "weighs each sample by its likelihood p\\(x\\|z\\), and model.reconstruction_loss=mse is none"),
])
def test_bad_objective_settings_are_refused_at_composition(overrides, phrase):
    with pytest.raises(ConfigError, match=phrase):
        to_settings(compose(overrides))


def test_an_unknown_schedule_lists_the_valid_ones():
    with pytest.raises(Exception) as excinfo:
        compose(["optimizer.schedule=linear"])
    assert "expected one of [constant, cosine, warmup_cosine]" in str(excinfo.value.__cause__)


def test_continuous_bernoulli_on_binarized_images_is_allowed_with_one_log_line(tiny_data_dir, tmp_path, caplog):
    from vae_train.run.build import build_parts

    settings = to_settings(compose([*tiny_overrides(tiny_data_dir), "model.decoder_distribution=continuous_bernoulli"]))
    with caplog.at_level(logging.INFO):
        build_parts(settings)
    assert sum("meant for grey levels" in record.message for record in caplog.records) == 1
