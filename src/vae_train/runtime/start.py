"""Starting TensorFlow once, and quietly.

``import tensorflow`` printed its C++ start-up lines twice ("All log messages before
absl::InitializeLog() is called...", oneDNN, cudart_stub): the TensorFlow API imports the profiler
client at start-up, whose extension ``_pywrap_profiler_plugin`` (90 MB) links its own copy of
TensorFlow's runtime and logging, which starts and logs again. Nothing in a run uses that client
(``tf.profiler.experimental.client``, for profiling a remote server), so its extension is loaded
only if something asks for it. Keras's scikit-learn wrappers (``keras.wrappers``), which no run uses
either, import scikit-learn and SciPy with Keras: about 1.5 s before the first step that the end-of-run
figures need only at the end (``run.train`` imports them in a thread while the model trains), so they
too load on first use. The first query of the GPUs then printed "E0000 ... failed call to
cuInit: INTERNAL: CUDA error" on every machine without one: an error line that is not an error.

:func:`start_tensorflow` imports TensorFlow and queries the GPUs with the process's C-level standard
error set aside, then keeps what was written there for the log at DEBUG level. Where an NVIDIA
driver is present but no GPU was found, the lines are a diagnosis and are logged as a warning.
``trainer.verbose_tensorflow=true``, or ``TF_CPP_MIN_LOG_LEVEL`` set below 2 in the environment,
leaves them on the console.

No TensorFlow at this module's import: the command line calls it before anything imports TensorFlow.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile
import types
from pathlib import Path

log = logging.getLogger(__name__)

PROFILER_PLUGIN = "tensorflow.python.profiler.internal._pywrap_profiler_plugin"
KERAS_SKLEARN_WRAPPERS = "keras.wrappers"
DEFERRED_MODULES = (PROFILER_PLUGIN, KERAS_SKLEARN_WRAPPERS)
# Below 2, TensorFlow's own switch asks for its informational lines.
LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


class _DeferredModule(types.ModuleType):
    """Stands in ``sys.modules`` for a module, which it loads on first use."""

    def __getattr__(self, attribute: str):
        if attribute.startswith("__"):
            # Module-wide scans (autograph's asks every module for __file__) must not load it.
            raise AttributeError(attribute)
        module = self.__dict__.get("_loaded")
        if module is None:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            module = self.__dict__["_loaded"] = importlib.import_module(self.__name__)
        return getattr(module, attribute)


def asks_for_tensorflow_logs(verbose: bool) -> bool:
    """``trainer.verbose_tensorflow``, or the user's own ``TF_CPP_MIN_LOG_LEVEL`` below 2."""
    level = os.environ.get(LOG_LEVEL_VARIABLE, "2")
    return verbose or (level.isdigit() and int(level) < 2)


def _import_and_probe() -> int:
    if "tensorflow" not in sys.modules:
        for name in DEFERRED_MODULES:
            sys.modules.setdefault(name, _DeferredModule(name))
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def start_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow and find its devices, with TensorFlow's C++ start-up lines kept off the console
    unless ``verbose`` (or the environment) asks for them."""
    if asks_for_tensorflow_logs(verbose):
        _import_and_probe()
        return
    os.environ.setdefault(LOG_LEVEL_VARIABLE, "2")
    sys.stderr.flush()
    console = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            gpus = _import_and_probe()
        finally:
            os.dup2(console, 2)
            os.close(console)
        captured.seek(0)
        lines = captured.read().decode(errors="replace").splitlines()
    if NVIDIA_DRIVER.exists() and gpus == 0:
        log.warning("An NVIDIA driver is installed but TensorFlow found no GPU; what it said:\n%s", "\n".join(lines))
    else:
        for line in lines:
            log.debug("TensorFlow: %s", line)
