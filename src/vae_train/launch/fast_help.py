"""A faster ``vae-train --help``.

Hydra's help lists every config group and its options: about a hundred listings (the app's groups,
Hydra's own and its plugins'), and for each one Hydra deep-copies its whole config repository
(every search path and every stored schema) before reading from it. That took 1.5 to 4 seconds here;
listings only read the repository, so one copy serves them all, and the help, unchanged, takes
well under a second. Applied only when the arguments ask for help.
"""

from __future__ import annotations

from collections.abc import Sequence

HELP_FLAGS = {"--help", "-h", "--hydra-help"}


def asks_for_help(arguments: Sequence[str]) -> bool:
    return bool(HELP_FLAGS.intersection(arguments))


def list_groups_from_one_repository() -> None:
    """Make Hydra's config loader answer group listings from one copy of its repository."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.object_type import ObjectType

    original = ConfigLoaderImpl.get_group_options
    if getattr(original, "one_repository", False):
        return
    repositories: dict = {}

    def get_group_options(self, group_name: str, results_filter=ObjectType.CONFIG, config_name=None,
                          overrides=None) -> list[str]:
        if overrides:
            return original(self, group_name, results_filter, config_name, overrides)
        key = (id(self), config_name)
        if key not in repositories:
            repositories[key] = self._parse_overrides_and_create_caching_repo(config_name, [])[1]
        return repositories[key].get_group_options(group_name, results_filter)

    get_group_options.one_repository = True
    ConfigLoaderImpl.get_group_options = get_group_options
