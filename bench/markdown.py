"""The pieces of docs/benchmarks.md's tables that every section's report shares."""

from __future__ import annotations


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table, then a blank line."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def met(value: float, target: float, above: bool = True) -> str:
    """Whether ``value`` meets ``target``: at least it (``above``), else at most it."""
    return "met" if (value >= target if above else value <= target) else "not met"
