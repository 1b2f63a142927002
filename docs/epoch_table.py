"""Print a run's per-epoch figures as a Markdown table, from the ``vae-train.log`` in its folder.

    python docs/epoch_table.py outputs/recipes/tf_cvae_tutorial

Wall time is the time between consecutive epoch lines of the log (the first from the line
announcing the model), so it includes the test-set evaluation and the pictures of that epoch.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")
EPOCH = re.compile(r"epoch (\d+)/\d+\s+step (\d+)\s+train (.*?)\s+test (.*?)\s+(\d+) images/s")
FIGURE = re.compile(r"(\w+)=(-?[\d.]+)")


def _time(line: str) -> datetime:
    return datetime.strptime(STAMP.match(line).group(1), "%Y-%m-%d %H:%M:%S,%f")


def epoch_rows(log: Path) -> list[dict]:
    rows, previous = [], None
    for line in log.read_text().splitlines():
        if not STAMP.match(line):
            continue
        if " - Model " in line:
            previous = _time(line)
        match = EPOCH.search(line)
        if match:
            now = _time(line)
            rows.append({"epoch": int(match.group(1)), "step": int(match.group(2)),
                         "train": dict(FIGURE.findall(match.group(3))), "test": dict(FIGURE.findall(match.group(4))),
                         "seconds": (now - previous).total_seconds(), "images_per_second": int(match.group(5))})
            previous = now
    return rows


def markdown(rows: list[dict]) -> str:
    test_names = list(rows[0]["test"])
    header = ["epoch", "train loss", *(f"test {name}" for name in test_names), "wall s", "images/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row["epoch"]), row["train"]["loss"], *(row["test"][name] for name in test_names),
                 f"{row['seconds']:.0f}", str(row["images_per_second"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        print(markdown(epoch_rows(Path(folder) / "vae-train.log")))
