"""The speed levers change speed only: the same training with and without each, within tolerance.

Speed itself is measured by ``make bench`` (docs/benchmarks.md), never asserted here. Also checked:
where ``trainer.precision=auto`` resolves, that mixed-precision runs keep float32 variables and
losses and export float32 models, and that the faster ``--help`` prints Hydra's help unchanged.
"""

from __future__ import annotations

import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import QUIET_EVALUATION, compose, synthetic_digits, tiny_overrides
from vae_train.config import Precision, to_settings
from vae_train.errors import ConfigError
from vae_train.run.build import build_parts, build_trainer
from vae_train.runtime import host_cpu, precision
from vae_train.runtime.precision import ComputePrecision


@pytest.fixture(autouse=True)
def float32_process_policy():
    """Each test starts from the process's usual float32 policy (an earlier test may have left another
    one, as set_up_devices does), and leaves it so."""
    keras.mixed_precision.set_dtype_policy("float32")
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def fit(data_dir, tmp_path, *overrides: str) -> tuple[dict, list[np.ndarray], object]:
    """Two epochs of 4 steps through the Trainer, as train() builds it; (last epoch, weights, parts)."""
    settings = to_settings(compose([*tiny_overrides(data_dir), "trainer.epochs=2", *QUIET_EVALUATION, *overrides]))
    folder = tmp_path / "_".join(o.replace("=", "-") for o in overrides) if overrides else tmp_path / "defaults"
    run = build_trainer(settings, folder)
    trainer, parts = run.trainer, run.parts
    last = trainer.fit().epochs[-1]
    assert trainer.step == 8
    return {**{f"train_{k}": v for k, v in last.train.items()}, **{f"test_{k}": v for k, v in last.test.items()}}, \
        [w.numpy() for w in parts.model.weights], parts


def assert_same_training(a, b, rel: float, weights_atol: float) -> None:
    figures_a, weights_a, _ = a
    figures_b, weights_b, _ = b
    assert figures_a.keys() == figures_b.keys()
    for key in figures_a:
        assert figures_a[key] == pytest.approx(figures_b[key], rel=rel), key
    for weight_a, weight_b in zip(weights_a, weights_b, strict=True):
        np.testing.assert_allclose(weight_a, weight_b, atol=weights_atol)


def test_steps_per_execution_trains_identically(tiny_data_dir, tmp_path):
    # 3 does not divide the 4 steps of an epoch: calls of 3 and 1 steps.
    one = fit(tiny_data_dir, tmp_path, "trainer.precision=float32", "trainer.steps_per_execution=1")
    three = fit(tiny_data_dir, tmp_path, "trainer.precision=float32", "trainer.steps_per_execution=3")
    assert_same_training(one, three, rel=1e-6, weights_atol=1e-6)


def test_xla_trains_like_the_default_kernels(tiny_data_dir, tmp_path):
    plain = fit(tiny_data_dir, tmp_path, "model=conv_ae", "trainer.precision=float32")
    xla = fit(tiny_data_dir, tmp_path, "model=conv_ae", "trainer.precision=float32", "trainer.jit_compile=true")
    # Other kernels, other summation orders: float32 rounding, compounded over 8 steps.
    assert_same_training(plain, xla, rel=1e-4, weights_atol=1e-4)


def test_host_cpu_reads_the_dataset_itself_and_trains_as_distributed(tiny_data_dir, tmp_path, monkeypatch):
    from vae_train.runtime import devices

    own = fit(tiny_data_dir, tmp_path / "own", "trainer.precision=float32")
    assert devices.trains_on_host_cpu(own[2].strategy)  # the shortcut was taken
    monkeypatch.setattr(devices, "trains_on_host_cpu", lambda strategy: False)
    distributed = fit(tiny_data_dir, tmp_path / "distributed", "trainer.precision=float32")
    assert_same_training(own, distributed, rel=1e-6, weights_atol=1e-6)


@pytest.fixture
def float32_run(tiny_data_dir, tmp_path):
    return fit(tiny_data_dir, tmp_path, "trainer.precision=float32")


def test_mixed_bfloat16_trains_like_float32(tiny_data_dir, tmp_path, float32_run):
    # mixed_float16 is not run here: on CPUs its convolutions take a slow path (a minute for these
    # 8 steps); its loss scaling is Keras's own.
    policy = "mixed_bfloat16"
    figures, weights, parts = fit(tiny_data_dir, tmp_path, f"trainer.precision={policy}")
    assert parts.precision == ComputePrecision(policy)
    assert parts.model.decoder.layers[-1].compute_dtype == policy.removeprefix("mixed_")
    # The variables, and so the checkpoints, stay float32; the losses are computed in float32.
    assert all(w.dtype == np.float32 for w in weights)
    assert not isinstance(parts.optimizer, keras.optimizers.LossScaleOptimizer)  # bfloat16 needs no scaling
    # bfloat16 activations: about 3 significant digits per layer.
    for key, value in float32_run[0].items():
        assert figures[key] == pytest.approx(value, rel=0.02, abs=0.05), key
    # Building a run leaves the process's own policy as it was.
    assert keras.mixed_precision.global_policy().name == "float32"


def test_mixed_bfloat16_run_exports_float32_models(tiny_data_dir, tmp_path):
    from vae_train.run.export import export_models

    settings = to_settings(compose([*tiny_overrides(tiny_data_dir), "trainer.precision=mixed_bfloat16"]))
    model = build_parts(settings).model
    paths = export_models(model, tmp_path)
    encoder = keras.saving.load_model(paths["encoder"])
    decoder = keras.saving.load_model(paths["decoder"])
    images = tf.constant(synthetic_digits(4, seed=5)[0][..., None] / 255.0, tf.float32)
    mean, _ = encoder(images)
    assert mean.dtype == tf.float32 and decoder(mean).dtype == tf.float32
    assert all(layer.compute_dtype == "float32" for layer in encoder.layers + decoder.layers)
    # The same weights: the float32 copy agrees with the bfloat16 model to bfloat16 rounding.
    np.testing.assert_allclose(mean, model.posterior(images).mean, rtol=0.05, atol=0.05)


@pytest.mark.parametrize(
    ("flags", "onednn", "gpus", "replicas", "expected"),
    [
        ({"avx512f", "amx_bf16", "amx_tile"}, None, 0, 1, "mixed_bfloat16"),
        ({"avx512f", "avx512_bf16"}, None, 0, 1, "float32"),  # bf16 instructions but no AMX: not measured to pay
        ({"avx2"}, None, 0, 1, "float32"),
        ({"amx_bf16"}, "0", 0, 1, "float32"),  # oneDNN off: Eigen's bfloat16 kernels are slow
        ({"amx_bf16"}, None, 1, 1, "float32"),  # a GPU: float32 unless asked
        ({"amx_bf16"}, None, 0, 2, "float32"),  # replicas must train like one device
    ],
)
def test_auto_precision(monkeypatch, flags, onednn, gpus, replicas, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    if onednn is None:
        monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    else:
        monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", onednn)
    assert precision.resolve_precision(Precision.auto, gpus=gpus, replicas=replicas).policy == expected
    assert precision.resolve_precision(Precision.float32, gpus=gpus).policy == "float32"
    assert precision.resolve_precision(Precision.mixed_bfloat16, gpus=1).policy == "mixed_bfloat16"
    assert precision.resolve_precision(Precision.mixed_float16).loss_scaling


def test_precision_keys():
    assert to_settings(compose([])).trainer.precision.value == "auto"
    # The older switch is gone: trainer.precision=mixed_float16 says it.
    with pytest.raises(Exception, match="mixed_precision"):
        compose(["trainer.mixed_precision=true"])
    with pytest.raises(Exception, match="precision"):
        compose(["trainer.precision=float64"])
    with pytest.raises(ConfigError, match="steps_per_execution"):
        to_settings(compose(["trainer.steps_per_execution=0"]))


def test_fast_help_prints_hydras_help_unchanged(tmp_path):
    import os
    import subprocess

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    fast = subprocess.run([sys.executable, "-m", "vae_train.launch.train_cli", "--help"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    # Imported without help in the arguments, so Hydra lists the groups its own way.
    plain = subprocess.run([sys.executable, "-c", "import sys; import vae_train.launch.train_cli as cli; "
                            "sys.argv = ['vae-train', '--help']; cli.main()"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert fast.returncode == plain.returncode == 0, fast.stderr + plain.stderr
    assert "== Configuration groups ==" in fast.stdout and "model: conv_ae, cvae, dense_ae" in fast.stdout
    assert fast.stdout == plain.stdout


def _batches(data_dir, *overrides: str, epoch: int = 0) -> np.ndarray:
    from vae_train.data.pipeline import ImagePipelines, load_dataset

    settings = to_settings(compose([*tiny_overrides(data_dir), *overrides]))
    pipelines = ImagePipelines(load_dataset(settings.data), settings.data, settings.seed)
    return np.stack([batch.numpy() for batch in pipelines.train(epoch)])


def test_gathered_batches_are_the_images_pipeline_batches(tiny_data_dir):
    # A partial shuffle: the same tf.data shuffle, of indices instead of images, so the same batches.
    for epoch in (0, 1):
        gathered = _batches(tiny_data_dir, "data.shuffle_buffer=40", epoch=epoch)
        shuffled = _batches(tiny_data_dir, "data.shuffle_buffer=40", "data.gather_batches=false", epoch=epoch)
        np.testing.assert_array_equal(gathered, shuffled)
    # A whole-set shuffle: another permutation, of the same images, in the same batch shapes.
    gathered = _batches(tiny_data_dir, "data.binarize=none")
    shuffled = _batches(tiny_data_dir, "data.binarize=none", "data.gather_batches=false")
    assert gathered.shape == shuffled.shape == (4, 32, 28, 28, 1) and gathered.dtype == np.float32
    assert sorted(image.tobytes() for image in gathered.reshape(128, -1)) == \
        sorted(image.tobytes() for image in shuffled.reshape(128, -1))
    assert not np.array_equal(gathered, shuffled)


def test_gathered_batches_train_like_the_images_pipeline(tiny_data_dir, tmp_path):
    # The same batches (a partial shuffle) give the same training; dynamic binarization included.
    common = ("trainer.precision=float32", "data.shuffle_buffer=40", "data.binarize=dynamic", "model=dense_ae")
    gathered = fit(tiny_data_dir, tmp_path, *common)
    shuffled = fit(tiny_data_dir, tmp_path, *common, "data.gather_batches=false")
    assert_same_training(gathered, shuffled, rel=1e-6, weights_atol=1e-6)


def test_a_multiruns_later_jobs_count_their_start_up_from_their_own_start(monkeypatch):
    monkeypatch.setattr(host_cpu, "_jobs_started", 0)
    host_cpu.start_job_clock()  # the first job pays for the imports: it counts from the process's start
    assert host_cpu.seconds_since_job_start() == pytest.approx(host_cpu.seconds_since_process_start(), abs=0.5)
    host_cpu.start_job_clock()
    assert host_cpu.seconds_since_job_start() < 0.5 < host_cpu.seconds_since_process_start()
