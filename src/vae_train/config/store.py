"""The schemas in Hydra's ConfigStore, and composed or saved configs as typed settings.

:func:`register` is called by whoever composes a config (the command line, ``compose``, the loader
of a saved config), never as a side effect of an import. No TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from vae_train.config.resolvers import register_resolvers
from vae_train.config.schema import GROUP_DEFAULTS, GROUP_SCHEMAS, Config
from vae_train.errors import ConfigError

# Keys of older runs' saved configs that a newer key replaced: old key -> (new key, old value -> new value).
RETIRED_KEYS = {
    "trainer.mixed_precision": ("trainer.precision", lambda on: "mixed_float16" if on else None),
}


# How to give a required key, for the message that says it is missing.
REQUIRED_KEY_EXAMPLES = {"data.root": "data.root=<a folder of images, one subfolder per class>"}


def register() -> None:
    """Store the schemas where the YAML files' defaults lists look for them (``schema/<group>/<name>``),
    and the resolvers the trainer's defaults use."""
    register_resolvers()
    store = ConfigStore.instance()
    store.store(name="config_schema", node=Config)
    for group, schemas in GROUP_SCHEMAS.items():
        for name, schema in schemas.items():
            store.store(group=f"schema/{group}", name=name, node=schema)


def to_settings(cfg: DictConfig) -> Config:
    """Turn a composed config into typed objects, running every range check."""
    try:
        settings = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as err:
        key = err.full_key
        example = REQUIRED_KEY_EXAMPLES.get(key, f"{key}=<value>")
        raise ConfigError(f"{key} has no value and needs one: add {example} to the command.") from None
    assert isinstance(settings, Config)
    return settings


def _replace_retired_keys(saved: DictConfig) -> None:
    for old_key, (new_key, translate) in RETIRED_KEYS.items():
        parent, _, leaf = old_key.rpartition(".")
        node = OmegaConf.select(saved, parent)
        if node is None or leaf not in node:
            continue
        value = translate(node[leaf])
        del node[leaf]
        if value is not None:
            OmegaConf.update(saved, new_key, value)


def load_saved_settings(path: Path, overrides: Sequence[str] = ()) -> Config:
    """The typed settings of a saved config (a run folder's ``.hydra/config.yaml``).

    ``overrides`` are ``key=value`` strings applied on top. The saved values are merged onto
    today's schemas, so a key added since the run took its default, and a retired key is read as
    the key that replaced it.
    """
    register_resolvers()  # a saved config holds the trainer's resolver interpolations
    try:
        saved = OmegaConf.load(path)
        _replace_retired_keys(saved)
        saved = OmegaConf.merge(saved, OmegaConf.from_dotlist(list(overrides)))
        schema = OmegaConf.structured(Config)
        for group, schemas in GROUP_SCHEMAS.items():
            name = OmegaConf.select(saved, f"{group}.name", default=GROUP_DEFAULTS.get(group))
            if name not in schemas:
                raise ConfigError(f"{path} names {group} {name!r}, which is not one of {', '.join(schemas)}.")
            schema[group] = OmegaConf.structured(schemas[name])
            if group not in saved:
                saved[group] = {"name": name}
        return to_settings(OmegaConf.merge(schema, saved))
    except (OSError, yaml.YAMLError, OmegaConfBaseException, ValueError) as err:
        reason = " ".join(str(err).split())
        raise ConfigError(f"Cannot use the config {path}: {reason}") from err
