"""What Linux reports of the host's CPU (/proc/cpuinfo: its model name and feature flags) and of this
process (/proc/self/stat: when it started), and when the current job of a multirun began."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def _cpuinfo_field(name: str) -> str | None:
    """The first processor's ``name`` field; None where /proc/cpuinfo is missing or lacks it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == name:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (avx2, amx_bf16, ...); empty outside Linux."""
    return set((_cpuinfo_field("flags") or "").split())


def seconds_since_process_start() -> float | None:
    """Wall time since this process started (the interpreter's start included); None outside Linux."""
    try:
        # Field 22 of /proc/self/stat, after the parenthesized command name, is the start time in
        # clock ticks since boot; /proc/uptime's first field is the seconds since boot.
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - started)


_jobs_started = 0
_job_started_at: float | None = None  # time.monotonic() when this process's current job began


def start_job_clock() -> None:
    """Marks the start of a job. The first job of a process counts from the process's start (imports
    and TensorFlow's start are its cost); the later jobs of a multirun, from here."""
    global _jobs_started, _job_started_at
    _jobs_started += 1
    _job_started_at = time.monotonic() if _jobs_started > 1 else None


def starting_first_job() -> bool:
    """Whether no job of this process has started its clock yet (the next one counts from the process's start)."""
    return _jobs_started == 0


def seconds_since_job_start() -> float | None:
    """Wall time since the current job started (see ``start_job_clock``); None outside Linux."""
    if _job_started_at is not None:
        return time.monotonic() - _job_started_at
    return seconds_since_process_start()

