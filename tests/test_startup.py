"""`catdog --help` and `catdog COMMAND --help` start without importing torch or matplotlib.

Timing is scripts/bench_inference.py's job; this checks the cause: what gets imported.
"""

import subprocess
import sys

import pytest

from tests.helpers import catdog

HEAVY = ("torch", "matplotlib", "numpy", "PIL", "torchvision", "onnx", "onnxruntime")


def imported(*args: str) -> set[str]:
    """Top-level packages `python -m catdog ARGS` imports (from `-X importtime`)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "catdog", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "catdog" in names  # the parse saw the imports at all
    return names


def commands() -> list[str]:
    listing = catdog("--help").stdout
    section = listing[listing.index("Commands:") :].splitlines()[1:]
    return [line.split()[0] for line in section if line.startswith("  ") and line.split()]


def test_main_help_imports_nothing_heavy() -> None:
    assert not imported("--help") & set(HEAVY)


@pytest.mark.parametrize("command", ["predict", "evaluate", "export", "train"])
def test_command_help_imports_nothing_heavy(command: str) -> None:
    assert command in commands()
    assert not imported(command, "--help") & set(HEAVY)


def test_every_command_help_stays_light() -> None:
    heavy = {name: imported(name, "--help") & set(HEAVY) for name in commands()}
    assert not {name: found for name, found in heavy.items() if found}
