"""Options and overrides in any order on ``vae-train``'s command line.

Hydra parses its command line with ``parse_args``, which takes no positional argument after the
first option's value: ``vae-train latent_dim=3 --cfg job data=fashion`` stopped at "unrecognized
arguments: data=fashion", though ``--help`` shows options and overrides as one list. Moving the
options ahead of the overrides, each with its value, gives Hydra the order it parses.
"""

from __future__ import annotations

from collections.abc import Sequence


def _value_count(action, following: str | None) -> int:
    """How many of the tokens after ``action``'s flag are its value (0 or 1 for Hydra's options)."""
    if action.nargs == 0:
        return 0
    if action.nargs == "?":
        # --info takes an optional value, one of its choices.
        return int(following is not None and action.choices is not None and following in action.choices)
    return 1


def options_first(arguments: Sequence[str]) -> list[str]:
    """``arguments`` with Hydra's options (and their values) first, the overrides after, each in its order."""
    from hydra._internal.utils import get_args_parser

    # argparse keeps the flag-to-action table private; Hydra's parser is built from it, and it is
    # the only place that says which flags take a value.
    flags = get_args_parser()._option_string_actions
    options: list[str] = []
    overrides: list[str] = []
    index = 0
    while index < len(arguments):
        token = arguments[index]
        if token == "--":
            # argparse's end of options: what follows is positional, wherever it goes.
            return options + ["--"] + overrides + list(arguments[index + 1:])
        flag = token.split("=", 1)[0]
        if token.startswith("-") and flag in flags:
            following = arguments[index + 1] if index + 1 < len(arguments) else None
            count = 0 if "=" in token else _value_count(flags[flag], following)
            options.extend(arguments[index:index + 1 + count])
            index += 1 + count
            continue
        overrides.append(token)
        index += 1
    return options + overrides
