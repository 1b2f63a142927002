"""Several workers under SLURM: TensorFlow's own ``SlurmClusterResolver``, with its edge cases settled
in how it is called, not in a copy of it.

Inside a job step of several tasks (``srun``, or Hydra's submitit launcher with several nodes or tasks
per node), every task runs vae-train; the resolver turns SLURM's variables (``SLURM_PROCID``,
``SLURM_STEP_NUM_TASKS``, ``SLURM_STEP_NODELIST``, ``SLURM_STEP_TASKS_PER_NODE``) into the cluster, task
0 being the chief. Its host-list parsing, ports (``trainer.worker_port`` plus the task's place on its
node) and GPU assignment are TensorFlow's. What it does not settle by itself:

- no GPU on the nodes (none listed by nvidia-smi, or nvidia-smi absent): it would divide by zero GPUs
  per task and list no task at all;
- GPUs SLURM already bound to each task (``--gpus-per-task``: every task sees its own as GPU 0, so
  ``CUDA_VISIBLE_DEVICES`` is set), or chosen by the user: it would reassign them from a count of one;
- fewer GPUs than tasks on a node: it refuses; the tasks share them instead.

In each of these the resolver is given one placeholder GPU per task to lay out the cluster and told not
to set ``CUDA_VISIBLE_DEVICES``. Otherwise it splits the node's GPUs evenly and sets
``CUDA_VISIBLE_DEVICES``, which :func:`slurm_cluster_resolver` makes it do at once, before TensorFlow
lists the GPUs.
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf

log = logging.getLogger(__name__)


def _gpus_on_this_node() -> int:
    # TensorFlow's count (CUDA_VISIBLE_DEVICES, else nvidia-smi), zero where nvidia-smi is missing or fails.
    from tensorflow.python.distribute.cluster_resolver.slurm_cluster_resolver import get_num_gpus

    try:
        return get_num_gpus()
    except (RuntimeError, OSError):
        return 0


def _most_tasks_on_a_node() -> int:
    from tensorflow.python.distribute.cluster_resolver.slurm_cluster_resolver import expand_tasks_per_node

    return max(expand_tasks_per_node(os.environ["SLURM_STEP_TASKS_PER_NODE"]))


def gpu_layout(tasks_per_node: int, gpus_per_node: int, bound: bool) -> dict:
    """The resolver's GPU arguments: its own even split of ``gpus_per_node``, or (GPUs already bound,
    none, or fewer than the tasks) one placeholder per task and ``CUDA_VISIBLE_DEVICES`` left alone."""
    if bound or gpus_per_node < tasks_per_node:
        return {"gpus_per_node": tasks_per_node, "gpus_per_task": 1, "auto_set_gpu": False}
    return {"gpus_per_node": gpus_per_node, "gpus_per_task": gpus_per_node // tasks_per_node, "auto_set_gpu": True}


def slurm_cluster_resolver(port_base: int) -> tf.distribute.cluster_resolver.SlurmClusterResolver:
    """This SLURM step's cluster, with this task's GPUs made visible before TensorFlow starts using them."""
    tasks_per_node = _most_tasks_on_a_node()
    bound = "CUDA_VISIBLE_DEVICES" in os.environ
    gpus = len([gpu for gpu in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if gpu]) if bound \
        else _gpus_on_this_node()
    if 0 < gpus < tasks_per_node and not bound:
        log.warning("%d tasks on a node share its %d GPU(s).", tasks_per_node, gpus)
    resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
        port_base=port_base, **gpu_layout(tasks_per_node, gpus, bound))
    resolver.cluster_spec()  # sets CUDA_VISIBLE_DEVICES when the resolver assigns the GPUs
    return resolver
