"""The commands' quick exit once TensorFlow is loaded: the status, the exit functions and the consoles
are those of a normal exit (TensorFlow stood in for by an empty module, so no test imports it here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import atexit, sys, types
from pathlib import Path
from vae_train.launch.process_exit import run_then_leave
if {tensorflow}:
    sys.modules["tensorflow"] = types.ModuleType("tensorflow")
atexit.register(lambda: Path({marker!r}).write_text("ran"))
def command():
    print("unflushed output", end="")  # no newline: still in the buffer of a pipe
    {ending}
run_then_leave(command)
print("never reached")
"""


@pytest.mark.parametrize("tensorflow", [True, False])
@pytest.mark.parametrize(("ending", "status", "stderr"), [
    ("return 0.5", 0, ""),  # a sweep score returned
    ("sys.exit(143)", 143, ""),  # stopped by SIGTERM
    ("sys.exit(None)", 0, ""),
    ("sys.exit('vae-eval: the message')", 1, "vae-eval: the message"),
])
def test_the_exit_keeps_the_status_the_exit_functions_and_the_output(tensorflow, ending, status, stderr, tmp_path):
    marker = tmp_path / "marker"
    script = SCRIPT.format(tensorflow=tensorflow, marker=str(marker), ending=ending)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == status, result.stderr
    assert result.stdout == "unflushed output"
    assert stderr in result.stderr
    assert marker.read_text() == "ran"
