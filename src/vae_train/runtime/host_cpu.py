"""What Linux reports of the host's CPU (/proc/cpuinfo): its model name and feature flags."""

from __future__ import annotations

import platform
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
