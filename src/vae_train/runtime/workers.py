"""The workers of a multi-worker run (``trainer.strategy=multi_worker``): which one writes the run
folder, where the others write, and a check that they all resume from the same step.

Every worker trains the same model in lockstep. Only the chief keeps files: the others write
theirs (checkpoints, TensorBoard, results) into a scratch folder deleted when the process exits,
as TensorFlow's multi-worker guide recommends, since saving a checkpoint is a collective every
worker must join. To resume, each worker starts from a copy of ``<run folder>/checkpoints``, so
the run folder must be one that all workers see (a shared file system), or a copy of it.
"""

from __future__ import annotations

import atexit
import logging
import re
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from vae_train.errors import CheckpointError
from vae_train.runtime.cluster import is_chief_task

log = logging.getLogger(__name__)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run folder."""
    resolver = strategy.cluster_resolver
    if resolver is None:
        return True
    return is_chief_task(resolver.task_type, resolver.task_id, resolver.cluster_spec().jobs)


def output_dir(run_dir: Path, chief: bool, checkpoints: str) -> Path:
    """Where this process writes: the run folder for the chief, else a scratch folder holding a
    copy of the run folder's ``checkpoints`` folder, so every worker restores the same weights."""
    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    scratch = Path(tempfile.mkdtemp(prefix="vae-train-worker-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    if (run_dir / checkpoints).is_dir():
        shutil.copytree(run_dir / checkpoints, scratch / checkpoints)
    log.info("Not the chief worker: files go to the scratch folder %s.", scratch)
    return scratch


def check_same_step(strategy: tf.distribute.Strategy, step: tf.Variable) -> None:
    """Refuse to train when the workers resumed from different steps, which would otherwise go
    unnoticed: each would apply the shared gradients to different weights."""
    resolver = strategy.cluster_resolver
    cluster = resolver.cluster_spec() if resolver is not None else None
    if cluster is None or sum(cluster.num_tasks(job) for job in cluster.jobs) < 2:
        return

    @tf.function
    def moments():
        value = tf.cast(step, tf.float64)
        context = tf.distribute.get_replica_context()
        return context.all_reduce(tf.distribute.ReduceOp.MEAN, tf.stack([value, value * value]))

    mean, mean_square = strategy.experimental_local_results(strategy.run(moments))[0].numpy()
    if mean_square != mean * mean:  # a spread: not every worker holds the same step
        raise CheckpointError(
            f"The workers resumed from different steps (this one from step {int(step.numpy())}, the mean "
            f"is {mean:g}): every worker needs the chief's checkpoints. Put the run folder on a file "
            "system all workers share, or copy the chief's checkpoints folder to every worker first."
        )


# How a collective op reports a peer that died or stopped answering, and what that means.
_LOST_PEER_ERRORS = {
    tf.errors.UnavailableError: "which stopped answering (its process ended, or its node)",
    tf.errors.AbortedError: "whose collective step was aborted",
    tf.errors.DeadlineExceededError: "which did not answer within trainer.worker_timeout_seconds",
    tf.errors.CancelledError: "whose collective step was cancelled",
}
_TASK = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")


def lost_worker(strategy: tf.distribute.Strategy, error: Exception) -> str | None:
    """A description of the worker ``error`` says was lost ("worker 1 at node02:8889"), or None when the
    error is not a multi-worker run losing a peer."""
    resolver = strategy.cluster_resolver
    meaning = next((text for kind, text in _LOST_PEER_ERRORS.items() if isinstance(error, kind)), None)
    if resolver is None or resolver.task_type is None or meaning is None:  # not a cluster of workers
        return None
    named = [match for match in _TASK.finditer(str(error))
             if (match[1], int(match[2])) != (resolver.task_type, resolver.task_id)]
    if not named:
        return f"another worker (TensorFlow's message does not say which), {meaning}"
    job, index = named[0][1], int(named[0][2])
    try:
        address = resolver.cluster_spec().task_address(job, index)
    except ValueError:
        address = "an unknown address"
    return f"{job} {index} at {address}, {meaning}"
