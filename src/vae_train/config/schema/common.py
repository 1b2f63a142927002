"""What every group's schema shares: the registry of per-option schemas and the range checks.

No TensorFlow here: ``vae-train --help`` and ``--cfg job`` go through this package.
"""

from __future__ import annotations

import math

from vae_train.errors import ConfigError

# The schema of each option of the groups whose options differ in their keys, by group and option
# name, filled by @option_schema. A model's name is also its registration (vae_train.models) and its
# file conf/model/<name>.yaml; a test checks that the three agree.
GROUP_SCHEMAS: dict[str, dict[str, type]] = {"data": {}, "model": {}, "optimizer": {}, "corruption": {}}
# The option of a group a saved config from before the group existed is read as.
GROUP_DEFAULTS = {"corruption": "none"}


def option_schema(group: str, name: str):
    """Make the decorated dataclass the schema of ``conf/<group>/<name>.yaml`` (``schema/<group>/<name>``)."""
    def register(schema: type) -> type:
        GROUP_SCHEMAS[group][name] = schema
        return schema

    return register


# Far above any latent size that makes sense for these images, low enough to catch a typo
# (latent_dim=20000) before it allocates gigabytes.
MAX_LATENT_DIM = 4096


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def require_positive(value: float | None, key: str) -> None:
    require(value is None or value > 0, f"{key} must be positive, got {value}.")


def require_interval(values: list[float], key: str, within: tuple[float, float] | None = None) -> None:
    """``values`` is ``[low, high]`` with low < high, strictly inside ``within`` if given."""
    lowest, highest = within or (-math.inf, math.inf)
    bounds = f" inside ({lowest}, {highest})" if within else ""
    require(len(values) == 2 and lowest < values[0] < values[1] < highest,
            f"{key} must be [low, high] with low < high{bounds}, got {values}.")
