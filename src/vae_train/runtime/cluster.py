"""The cluster this process belongs to, as its environment describes it: TF_CONFIG, or a SLURM job
step of several tasks. No TensorFlow here, so the command line can tell the chief before TensorFlow
starts (the run folder's lock is the chief's)."""

from __future__ import annotations

import json
import os


def is_chief_task(task_type: str | None, task_id: int | None, jobs: list[str]) -> bool:
    """Whether a task of a TF_CONFIG cluster is its chief: the ``chief`` task if the cluster has
    one, else worker 0. A process outside any cluster (task_type None) is its own chief."""
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in jobs


def slurm_step_tasks() -> int:
    """The number of tasks of the SLURM job step (srun) this process runs in; 1 outside one. Not the
    job's SLURM_NTASKS: a batch script run without srun is one process, whatever the job's task count."""
    tasks = os.environ.get("SLURM_STEP_NUM_TASKS", "")
    return int(tasks) if tasks.isdigit() else 1


def is_chief_process() -> bool:
    """Whether this process is its cluster's chief: TF_CONFIG's, else SLURM's task 0 of a step of
    several tasks, else (a process on its own) yes. Unparseable TF_CONFIG counts as no cluster; the
    strategy reports it when it reads it."""
    try:
        tf_config = json.loads(os.environ["TF_CONFIG"]) if "TF_CONFIG" in os.environ else None
    except ValueError:
        tf_config = None
    if isinstance(tf_config, dict) and isinstance(tf_config.get("task"), dict):
        task = tf_config["task"]
        return is_chief_task(task.get("type"), task.get("index"), list(tf_config.get("cluster", {})))
    if slurm_step_tasks() > 1:
        return os.environ.get("SLURM_PROCID", "0") == "0"
    return True


def check_step_matches_launcher(nodes: int | None, tasks_per_node: int | None) -> None:
    """Refuse a SLURM job step whose task count is not the ``nodes`` x ``tasks_per_node`` the launcher
    (hydra.launcher) asked for: the workers would wait for tasks that never come, or leave some out."""
    from vae_train.errors import ConfigError

    step = os.environ.get("SLURM_STEP_NUM_TASKS", "")
    if nodes is None or tasks_per_node is None or not step.isdigit():
        return
    if int(step) != nodes * tasks_per_node:
        raise ConfigError(
            f"This SLURM job step has {step} task(s), but the launcher asked for hydra.launcher.nodes={nodes} x "
            f"hydra.launcher.tasks_per_node={tasks_per_node} = {nodes * tasks_per_node}. Submit it through "
            "the launcher (vae-train -m hydra/launcher=submitit_slurm ...) without srun options of your own, "
            "or make the two agree.")
