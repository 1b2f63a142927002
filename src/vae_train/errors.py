"""Errors that mean the user's input is wrong, as opposed to a bug in this package.

The command line prints these as one paragraph and exits non-zero; anything else keeps its
traceback, because then the traceback is what a bug report needs.
"""


class VaeTrainError(Exception):
    """A problem the user can fix; the message says what and how."""


class ConfigError(VaeTrainError):
    """A config value that composes but cannot be used."""


class DataError(VaeTrainError):
    """A dataset file that is missing, unreadable or not what it claims to be."""


class CheckpointError(VaeTrainError):
    """A checkpoint that cannot be restored into the configured model."""


class TrainingError(VaeTrainError):
    """Training cannot go on, for example because the loss stopped being finite."""
