"""The benchmark's own pieces: its reference model is recipe C's and computes what vae-train's conv
VAE computes, its FLOP count, its paired ratios and the Markdown block it writes."""

from __future__ import annotations

import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import IMAGE_SHAPE, PROJECT_ROOT, compose, synthetic_digits
from vae_train.config import to_settings

if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from bench import flops, layout, reference, report, timing  # noqa: E402


@pytest.fixture(autouse=True)
def float32_process_policy():
    keras.mixed_precision.set_dtype_policy("float32")
    yield


def recipe_c_model():
    from vae_train.models import build_model

    settings = to_settings(compose(["experiment=keras_vae_fashion"]))
    return build_model(settings.model, settings.latent_dim, IMAGE_SHAPE, seed=0)


def test_reference_is_recipe_c_and_computes_what_vae_train_computes():
    ours = recipe_c_model()
    theirs = reference.build_reference(latent_dim=2, seed=0)
    # The parameter counts seed-models.md gives for recipe C.
    assert (theirs.encoder.count_params(), theirs.decoder.count_params()) == (69_076, 65_089)
    reference.copy_weights((ours.encoder, ours.decoder), reference.parts(theirs))
    images = tf.constant(synthetic_digits(8, seed=2)[0][..., None] / 255.0, tf.float32)
    z_mean, z_log_var, _ = theirs.encoder(images)
    posterior = ours.posterior(images)
    np.testing.assert_allclose(z_mean, posterior.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z_log_var, posterior.log_variance, rtol=1e-5, atol=1e-6)
    # The reference's sigmoid layer against vae-train's logits.
    np.testing.assert_allclose(theirs.decoder(z_mean), tf.sigmoid(ours.decode(z_mean)), rtol=1e-5, atol=1e-6)
    # The fused cross-entropy on logits is the reference's binary cross-entropy of probabilities x 784.
    logits = ours.decode(z_mean)
    probabilities = theirs.decoder(z_mean)
    theirs_bce = 784 * keras.ops.mean(keras.losses.binary_crossentropy(images, probabilities), axis=(1, 2))
    np.testing.assert_allclose(ours.reconstruction_loss(images, logits), theirs_bce, rtol=1e-4)


def test_flops_are_counted_from_the_layer_shapes():
    model = recipe_c_model()
    work = {layer.name.split("/")[0] + "/" + layer.kind: layer.macs
            for layer in flops.model_work(model.encoder, model.decoder)}
    macs = [w.macs for w in flops.model_work(model.encoder, model.decoder)]
    # By hand: conv 14*14*32*9*1, conv 7*7*64*9*32, dense 3136*16, heads 2*(16*2), dense 2*3136,
    # transposed convs 7*7*64*9*64, 14*14*64*9*32 and 28*28*32*9*1.
    assert sorted(macs) == sorted([56_448, 903_168, 50_176, 32, 32, 6_272, 1_806_336, 3_612_672, 225_792])
    assert flops.training_flops_per_image(model.encoder, model.decoder) == 3 * 2 * sum(macs)
    assert len(work) == 4  # Conv2D, Dense in the encoder; Dense, Conv2DTranspose in the decoder


def test_paired_ratio_and_markdown_block(tmp_path):
    assert timing.paired_ratio([2.0, 4.0, 9.0], [1.0, 2.0, 3.0]) == 2.0
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# Benchmarks\n\nhand-written\n\n{report.BEGIN}\nold\n{report.END}\n\nmore prose\n")
    report.write({"machine": {"cpu": "test CPU"}, "total_seconds": 1.0}, None, page)
    text = page.read_text()
    assert "hand-written" in text and "more prose" in text and "old" not in text and "test CPU" in text


def test_a_layout_section_this_cpu_cannot_run_is_reported_as_not_measured():
    text = report.render({"machine": {"cpu": "test CPU"}, "total_seconds": 1.0, "layout": {"skipped": "no kernel"}})
    assert "### Layout\n\nNot measured: no kernel." in text


@pytest.mark.skipif(not layout.channels_first_runs_here(),
                    reason="this CPU's TensorFlow build has no channels-first convolution kernel")
def test_layout_stacks_compute_the_same_function_in_both_layouts():
    """The layout lever compares like with like: the same weights give the same logits, transposed."""
    images = tf.constant(synthetic_digits(4, seed=3)[0][..., None] / 255.0, tf.float32)
    last, first = (layout.conv_stack(data_format, seed=1) for data_format in layout.LAYOUTS)
    for weight_last, weight_first in zip(last.get_weights(), first.get_weights(), strict=True):
        np.testing.assert_array_equal(weight_last, weight_first)
    logits_first = first(tf.transpose(images, [0, 3, 1, 2]))
    np.testing.assert_allclose(tf.transpose(logits_first, [0, 2, 3, 1]), last(images), rtol=1e-4, atol=1e-5)
    steps = layout.training_steps("channels_first", images)
    assert np.isfinite(steps(tf.constant(2)).numpy())


def test_the_tutorial_reference_script_is_recipe_a():
    from bench import tutorial_cvae

    model = tutorial_cvae.CVAE(latent_dim=2)
    # The parameter counts of the TensorFlow tutorial's inference and generative nets at latent_dim 2.
    assert (model.encoder.count_params(), model.decoder.count_params()) == (28_036, 41_953)
    images = tutorial_cvae.preprocess(np.array([[[0, 127], [128, 255]]] * 2, np.uint8).repeat(14, 1).repeat(14, 2))
    assert images.shape == (2, 28, 28, 1) and set(np.unique(images)) == {0.0, 1.0}
    assert images[0, 0, 14, 0] == 0.0 and images[0, 14, 0, 0] == 1.0  # 127 is below half, 128 is not
    assert np.isfinite(float(tutorial_cvae.compute_loss(model, tf.constant(images))))


def test_the_start_up_parts_add_up_to_the_process_wall_time():
    from bench import startup

    results = {"steps": 1000, "wall_seconds": 40.0, "wall_startup_seconds": 12.0, "wall_training_steps_seconds": 20.0,
               "wall_between_epochs_seconds": 3.0, "wall_end_of_run_seconds": 5.0,
               "wall_parts": {"interpreter_and_hydra": 1.0, "tensorflow_import": 6.0, "devices": 0.5, "data": 1.0,
                              "model": 0.5, "evaluation_set_up": 1.0, "restore": 0.2,
                              "first_call_of_the_steps": 4.0, "test_figures": 1.5, "checkpoints": 0.5,
                              "epoch_pictures": 0.5, "end_of_run_figures": 4.0, "export": 0.5}}
    parts = startup.split(results, process_seconds=42.0, first_call_steps=100)

    assert list(parts) == [name for name, _ in startup.ROWS]
    assert sum(parts.values()) == pytest.approx(42.0)
    # Later calls: 16 s for 900 steps; the first call's 100 steps at that rate leave the rest as tracing.
    assert parts["tracing"] == pytest.approx(4.0 - 100 * 16.0 / 900)
    assert parts["exit"] == pytest.approx(2.0) and parts["other_start_up"] == pytest.approx(1.8)
    assert "Start-up and the end of a run" in "\n".join(startup.table(
        {"command": "c", "parts": parts, "wall_seconds": 42.0, "outside_steps_seconds": 20.0,
         "first_step_seconds": 13.0, "reference_wall_seconds": 30.0, "ratio": 1.4}))


def test_the_reference_takes_images_with_or_without_their_channel_axis():
    import numpy as np
    from bench.reference import as_float_images

    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28) % 255
    for given in (images, images[..., np.newaxis]):
        converted = as_float_images(given)
        assert converted.shape == (2, 28, 28, 1) and converted.dtype == np.float32
        np.testing.assert_allclose(converted[..., 0], images / 255.0, rtol=1e-6)
