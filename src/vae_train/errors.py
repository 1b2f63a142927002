"""Errors that mean the user's input or machine is at fault, as opposed to a bug in this package.

The command line prints these as one paragraph and exits non-zero (the status of EXIT_STATUS);
anything else keeps its traceback, because then the traceback is what a bug report needs.
"""

from __future__ import annotations


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


class StorageError(VaeTrainError):
    """A write that failed for want of room or access: a full disk, a quota, a read-only or vanished
    folder. Nothing is wrong with the run itself, so the command line exits with a status that tells a
    scheduler to try again (see EXIT_STATUS) and the same command goes on once the cause is fixed.

    The message is three parts: ``problem`` (what was written where, why it failed, the free space),
    ``run_state`` (what is safe on disk and how the run goes on; added by whoever knows it, see
    :meth:`noting`) and ``remedy``.
    """

    def __init__(self, problem: str, remedy: str = "", run_state: str = ""):
        super().__init__(problem, remedy, run_state)
        self.problem = problem
        self.remedy = remedy
        self.run_state = run_state

    def noting(self, run_state: str) -> StorageError:
        """This error with ``run_state`` told, unless a closer layer told it already."""
        return self if self.run_state else StorageError(self.problem, self.remedy, run_state)

    def __str__(self) -> str:
        return " ".join(part for part in (self.problem, self.run_state, self.remedy) if part)


# The command lines' exit status for each kind of error: the entry of the nearest class along the
# error's MRO. 75 is EX_TEMPFAIL of sysexits.h, "try again later", which schedulers requeue on.
EXIT_STATUS: dict[type[VaeTrainError], int] = {
    VaeTrainError: 1,
    StorageError: 75,
}


def exit_status(error: VaeTrainError) -> int:
    return next(EXIT_STATUS[kind] for kind in type(error).__mro__ if kind in EXIT_STATUS)
