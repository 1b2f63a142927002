"""``tf.function`` for the functions a run builds once and traces once."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


def run_function(python_function: Callable | None = None, **options) -> Callable:
    """``tf.function(python_function, **options)`` (or a decorator, without ``python_function``), for a
    function each run builds, or traces, once.

    TensorFlow counts the traces of all the ``tf.function``s of the same Python code in a process
    together, so the jobs of a multirun, each tracing its own, looked like one function retracing:
    "6 out of the last 12 calls to <bound method Evaluator...> triggered tf.function retracing". The
    warning is off for these functions, whose traces are one per run; others keep it.
    """
    if python_function is None:
        return lambda function: run_function(function, **options)
    function = tf.function(python_function, **options)
    if hasattr(function, "_omit_frequent_tracing_warning"):  # TensorFlow's own switch, as its loaders set it
        function._omit_frequent_tracing_warning = True
    return function
