"""Config composition, typed settings and the command line, without TensorFlow.

Nothing here may import TensorFlow: composing a config and answering ``--help``, ``--cfg job``
or a config error must stay light, and one test checks exactly that in a fresh interpreter.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from operator import attrgetter
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ValidationError

from conftest import compose
from vae_train.config import (
    GROUP_SCHEMAS,
    MAX_LATENT_DIM,
    AdamConfig,
    Binarize,
    Config,
    ConvAEConfig,
    ConvVAEConfig,
    DenseAEConfig,
    DenseVAEConfig,
    FolderDataConfig,
    MVTecDataConfig,
    PublishedDataConfig,
    RMSpropConfig,
    SGDConfig,
    TrainerConfig,
    to_settings,
)
from vae_train.errors import ConfigError
from vae_train.launch.argv import options_first

MODEL_SCHEMAS = {"dense_ae": DenseAEConfig, "conv_ae": ConvAEConfig, "cvae": ConvVAEConfig, "dense_vae": DenseVAEConfig}
OPTIMIZER_SCHEMAS = {"sgd": SGDConfig, "adam": AdamConfig, "rmsprop": RMSpropConfig}
DATASETS = ("mnist", "fashion", "cifar10")
DATA_SCHEMAS = {"mnist": PublishedDataConfig, "fashion": PublishedDataConfig, "cifar10": PublishedDataConfig,
                "folder": FolderDataConfig, "mvtec": MVTecDataConfig}
CLI = [sys.executable, "-m", "vae_train.launch.train_cli"]


# --- composition of every group option -------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "model", "optimizer"), list(itertools.product(DATASETS, MODEL_SCHEMAS, OPTIMIZER_SCHEMAS))
)
def test_every_group_option_composes_into_its_typed_schema(data, model, optimizer):
    cfg = compose([f"data={data}", f"model={model}", f"optimizer={optimizer}"])

    assert (cfg.data.name, cfg.model.name, cfg.optimizer.name) == (data, model, optimizer)
    settings = to_settings(cfg)
    assert type(settings) is Config
    assert type(settings.data) is DATA_SCHEMAS[data]
    assert type(settings.model) is MODEL_SCHEMAS[model]
    assert type(settings.optimizer) is OPTIMIZER_SCHEMAS[optimizer]
    assert type(settings.trainer) is TrainerConfig
    assert (settings.data.name, settings.model.name, settings.optimizer.name) == (data, model, optimizer)
    # Enum-typed fields come out as members, not as the strings in the YAML.
    assert isinstance(settings.data.binarize, Binarize)


def test_defaults_are_binarized_mnist_cvae_adam_with_a_2d_latent_space():
    cfg = compose()
    settings = to_settings(cfg)

    assert cfg.data.name == "mnist"
    assert cfg.model.name == "cvae"
    assert cfg.optimizer.name == "adam"
    assert settings.data.binarize is Binarize.static
    assert isinstance(settings.model, ConvVAEConfig)
    assert isinstance(settings.optimizer, AdamConfig)
    assert settings.latent_dim == 2


def test_fashion_keeps_grey_levels():
    assert to_settings(compose(["data=fashion"])).data.binarize is Binarize.none


def test_overrides_reach_the_typed_settings():
    settings = to_settings(compose([
        "optimizer=sgd", "optimizer.momentum=0.5", "optimizer.learning_rate=0.25",
        "model=dense_ae", "model.hidden_units=[7,5]", "latent_dim=16",
        "data.binarize=dynamic", "data.batch_size=8",
    ]))

    assert settings.optimizer.momentum == 0.5
    assert settings.optimizer.learning_rate == 0.25
    assert settings.model.hidden_units == [7, 5]
    assert settings.latent_dim == 16
    assert settings.data.binarize is Binarize.dynamic
    assert settings.data.batch_size == 8


# --- bad overrides -----------------------------------------------------------------------------


def test_unknown_choice_fails_at_composition_listing_the_valid_options():
    with pytest.raises(ConfigCompositionException) as excinfo:
        compose(["model=nope"])

    message = str(excinfo.value)
    assert "model/nope" in message
    for option in ("conv_ae", "cvae", "dense_ae"):
        assert option in message


@pytest.mark.parametrize("override", ["model.nope=1", "data.nope=1", "optimizer.nope=1", "trainer.nope=1"])
def test_unknown_key_fails_at_composition(override):
    with pytest.raises(ConfigCompositionException) as excinfo:
        compose([override])

    assert override.split("=")[0] in str(excinfo.value)
    assert isinstance(excinfo.value.__cause__, ConfigAttributeError)


@pytest.mark.parametrize("override", ["latent_dim=abc", "latent_dim=1.5", "data.batch_size=abc", "model.beta=abc"])
def test_wrong_type_fails_at_composition(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigCompositionException) as excinfo:
        compose([override])

    assert isinstance(excinfo.value.__cause__, ValidationError)
    assert key in str(excinfo.value.__cause__)


def test_value_outside_an_enum_fails_at_composition_listing_the_members():
    with pytest.raises(ConfigCompositionException) as excinfo:
        compose(["data.binarize=sometimes"])

    cause = excinfo.value.__cause__
    assert isinstance(cause, ValidationError)
    for member in Binarize:
        assert member.value in str(cause)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("latent_dim=0", "latent_dim"),
        ("latent_dim=-3", "latent_dim"),
        ("latent_dim=100000", "latent_dim"),
        (f"latent_dim={MAX_LATENT_DIM + 1}", "latent_dim"),
        ("data.batch_size=0", "data.batch_size"),
        ("data.max_train_examples=0", "data.max_train_examples"),
        ("optimizer.learning_rate=0", "optimizer.learning_rate"),
        ("optimizer.learning_rate=-1", "optimizer.learning_rate"),
        ("model.beta=-1", "model.beta"),
        ("evaluation.every_n_epochs=0", "evaluation.every_n_epochs must be positive"),
        ("evaluation.test_every_n_epochs=0", "evaluation.test_every_n_epochs must be positive"),
    ],
)
def test_out_of_range_value_composes_but_to_settings_raises_config_error(override, key):
    cfg = compose(["model=cvae", override])  # composition itself accepts the value

    with pytest.raises(ConfigError, match=key):
        to_settings(cfg)


@pytest.mark.parametrize(("key", "value"), [("latent_dim", 1), ("latent_dim", MAX_LATENT_DIM), ("model.beta", 0)])
def test_range_boundaries_are_accepted(key, value):
    settings = to_settings(compose(["model=cvae", f"{key}={value}"]))

    assert attrgetter(key)(settings) == value


# --- the command line --------------------------------------------------------------------------


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_cli_help_lists_every_group_and_its_options(tmp_path):
    result = run_cli(["--help"], tmp_path)

    assert result.returncode == 0, result.stderr
    groups = {}
    for line in result.stdout.splitlines():
        group, sep, options = line.partition(": ")
        if sep and group in ("data", "model", "optimizer", "corruption", "trainer"):
            groups[group] = {option.strip() for option in options.split(",")}
    assert groups == {
        "data": set(DATA_SCHEMAS),
        "model": set(GROUP_SCHEMAS["model"]),
        "optimizer": set(OPTIMIZER_SCHEMAS),
        "corruption": {"none", "gaussian", "salt_pepper", "masking"},
        "trainer": {"default"},
    }
    assert list(tmp_path.iterdir()) == []  # --help runs nothing, so writes nothing


def test_cli_cfg_job_prints_the_composed_yaml_with_overrides_applied(tmp_path):
    # Overrides on both sides of an option: Hydra alone stops at the first one after it.
    result = run_cli(["latent_dim=16", "--cfg", "job", "model=dense_ae"], tmp_path)

    assert result.returncode == 0, result.stderr
    printed = OmegaConf.create(result.stdout)
    assert printed.latent_dim == 16
    assert printed.model.name == "dense_ae"
    assert printed.data.binarize == "static"
    assert "hydra" not in printed  # job config only
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("arguments, expected", [
    (["a=1", "--cfg", "job", "b=2"], ["--cfg", "job", "a=1", "b=2"]),
    (["a=1", "-m", "b=1,2", "-c", "hydra"], ["-m", "-c", "hydra", "a=1", "b=1,2"]),
    (["a=1", "--cfg=job", "b=2"], ["--cfg=job", "a=1", "b=2"]),
    # --info's value is optional: taken when it is one of its choices, else an override.
    (["--info", "a=1"], ["--info", "a=1"]),
    (["a=1", "--info", "config"], ["--info", "config", "a=1"]),
    (["a=1", "--multirun", "--", "-b=2"], ["--multirun", "--", "a=1", "-b=2"]),
])
def test_options_go_before_the_overrides_each_with_its_value(arguments, expected):
    assert options_first(arguments) == expected


def test_cli_unknown_choice_exits_nonzero_with_the_valid_options_and_no_traceback(tmp_path):
    result = run_cli(["model=nope"], tmp_path)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    for option in ("conv_ae", "cvae", "dense_ae"):
        assert option in result.stderr
    assert len(result.stderr.splitlines()) < 20


def test_cli_out_of_range_value_exits_nonzero_with_one_paragraph_and_no_traceback(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(["latent_dim=0", f"hydra.run.dir={run_dir}"], tmp_path)

    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0
    assert "Traceback" not in output
    assert "latent_dim" in output
    assert "\n\n" not in output  # one paragraph
    assert len(output.splitlines()) <= 3
    # Refused before Hydra created the run folder: a mistyped re-run cannot touch an existing run.
    assert list(tmp_path.iterdir()) == []


def test_composing_and_cfg_job_and_config_errors_do_not_import_tensorflow(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from hydra import compose, initialize_config_dir
        import vae_train.launch.train_cli
        from vae_train.config import to_settings
        from vae_train.errors import ConfigError

        with initialize_config_dir(config_dir=vae_train.launch.train_cli.config_dir(), version_base="1.3"):
            cfg = compose("config", overrides=["model=conv_ae", "optimizer=rmsprop"])
        to_settings(cfg)

        sys.argv = ["vae-train", "--cfg", "job"]
        vae_train.launch.train_cli.main()

        sys.argv = ["vae-train", "latent_dim=0", "hydra.run.dir={tmp_path / 'run'}"]
        try:
            vae_train.launch.train_cli.main()
        except SystemExit as stop:
            assert stop.code != 0, stop.code
        else:
            raise AssertionError("latent_dim=0 did not exit")

        heavy = sorted(name for name in ("tensorflow", "keras") if name in sys.modules)
        assert not heavy, f"imported {{heavy}}"
        print("light")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("light")
