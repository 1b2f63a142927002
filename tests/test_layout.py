"""The package's rooms and the direction of its imports.

The folders show the flow ``launch -> config -> data / models -> training -> evaluation -> run``:
each package may import only the packages listed for it below, so no import runs back up the flow,
and the launching side (``launch``, ``config``, ``run.layout``) never imports TensorFlow.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "src" / "vae_train"
SHARED = {"errors", "files"}  # modules every room may use
# What each room may import besides itself and SHARED.
ALLOWED = {
    "config": set(),
    "runtime": {"config"},
    "data": {"config"},
    "models": {"config", "runtime"},
    "training": {"config", "runtime", "data", "models"},
    "evaluation": {"config", "runtime", "data", "models"},
    "run": {"config", "runtime", "data", "models", "training", "evaluation"},
    # The commands import the run's work inside their functions, once their arguments are read.
    "launch": {"config", "run", "runtime"},
}
# Modules the launching process imports: none may pull in TensorFlow.
LIGHT = ["vae_train.run.layout", "vae_train.runtime.start", *(
    ".".join(("vae_train", *path.relative_to(PACKAGE).with_suffix("").parts))
    for room in ("config", "launch") for path in sorted((PACKAGE / room).rglob("*.py")))]


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "vae_train" else None


def _imports(path: Path) -> set[str]:
    """Every vae_train module ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("vae_train.")}


def test_every_module_lives_in_a_room():
    loose = sorted(path.name for path in PACKAGE.glob("*.py") if path.stem not in SHARED | {"__init__"})
    assert not loose, f"modules outside the rooms: {loose}"
    assert {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"} \
        >= set(ALLOWED)


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_imports_follow_the_flow(room):
    wrong = []
    for path in sorted((PACKAGE / room).rglob("*.py")):
        for module in _imports(path):
            target = _room(module)
            if target not in {room, *SHARED, *ALLOWED[room]}:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_launching_side_imports_no_tensorflow():
    code = textwrap.dedent(f"""
        import importlib, sys
        for name in {LIGHT!r}:
            importlib.import_module(name)
        heavy = sorted(name for name in ("tensorflow", "keras") if name in sys.modules)
        assert not heavy, f"imported {{heavy}}"
        print(len({LIGHT!r}))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert int(result.stdout) == len(LIGHT) >= 10


def test_scikit_learn_is_not_imported_before_the_first_step():
    """Keras's scikit-learn wrappers and the end-of-run figures bring scikit-learn (about 1.5 s); a run
    imports it while it trains, and Keras's wrappers still load when asked for."""
    code = textwrap.dedent("""
        import sys
        from vae_train.runtime.start import start_tensorflow
        start_tensorflow()
        import vae_train.run.train
        assert "sklearn" not in sys.modules, "imported before training"
        import keras
        assert keras.wrappers.SKLearnClassifier.__name__ == "SKLearnClassifier"
        assert "sklearn" in sys.modules
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
