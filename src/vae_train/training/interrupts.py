"""SIGTERM and SIGINT as a request to stop cleanly: the loop checkpoints and returns.

Schedulers send SIGTERM before preempting a job, and Ctrl-C sends SIGINT; both mean "save and
go". A second signal of the same kind gets the default action, so a second Ctrl-C exits at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager

log = logging.getLogger(__name__)

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    def __init__(self) -> None:
        self.signal_number: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    @property
    def signal_name(self) -> str | None:
        return None if self.signal_number is None else signal.Signals(self.signal_number).name

    def _handle(self, signal_number: int, _frame) -> None:
        self.signal_number = signal_number
        signal.signal(signal_number, signal.SIG_DFL)
        log.warning("%s received: saving a checkpoint at the end of the current step, then stopping "
                    "(send it again to stop at once, without saving).", signal.Signals(signal_number).name)

    @contextmanager
    def installed(self):
        """Handle the signals inside the block; Python allows handlers only in the main thread."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {number: signal.signal(number, self._handle) for number in HANDLED_SIGNALS}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
