"""Models by name: ``@register_model("cvae")`` on a class makes ``model=cvae`` build it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from vae_train.errors import ConfigError

ModelClass = TypeVar("ModelClass", bound=type)

_REGISTRY: dict[str, type] = {}


def register_model(name: str) -> Callable[[ModelClass], ModelClass]:
    def decorator(cls: ModelClass) -> ModelClass:
        if name in _REGISTRY:
            raise ValueError(
                f"Model name {name!r} is taken by {_REGISTRY[name].__module__}."
                f"{_REGISTRY[name].__qualname__}; pick another for {cls.__qualname__}."
            )
        _REGISTRY[name] = cls
        return cls

    return decorator


def registered_models() -> list[str]:
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"No model registered as {name!r}; registered: {', '.join(registered_models())}. "
            f"A new model is a module src/vae_train/models/{name}.py with a class decorated "
            f"@register_model({name!r}), a file conf/model/{name}.yaml, and, for keys of its own, a schema "
            f"dataclass decorated @option_schema(\"model\", {name!r}) in src/vae_train/config/schema.py."
        ) from None
