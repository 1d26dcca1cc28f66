"""`catdog gradcheck`: passes on our backprop, fails over a tolerance, reads a config."""

import re
from pathlib import Path

import yaml

from tests.conftest import REPO, catdog

ENV = {"PYTHONPATH": str(REPO)}


def gradcheck(*args: str | Path) -> tuple[int, str, str]:
    result = catdog("gradcheck", *args, cwd=REPO, env=ENV)
    return result.returncode, result.stdout, result.stderr


def layer_lines(stdout: str) -> dict[str, list[str]]:
    """Table rows by parameter name: weights, abs error, rel error, backprop ms, fd ms."""
    rows = re.findall(r"^(layers\.\d+\.(?:weight|bias))\s+(.*)$", stdout, re.M)
    return {name: rest.replace(" ms", "").split() for name, rest in rows}


def test_passes_on_the_default_network() -> None:
    code, stdout, stderr = gradcheck()
    assert code == 0, stderr
    assert "network 108 → 8 → 8 → 1, mse loss" in stdout  # [512, 128] capped at 8, RGB 6x6
    layers = layer_lines(stdout)
    assert list(layers) == [f"layers.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")]
    assert [int(row[0]) for row in layers.values()] == [864, 8, 64, 8, 8, 1]
    assert all(float(row[2]) <= 1e-6 for row in layers.values())
    assert "passed: largest relative error" in stdout


def test_fails_with_exit_1_over_the_tolerance(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"model": {"hidden": [2]}, "data": {"grayscale": True}}))
    code, stdout, _ = gradcheck("--config", config, "--tolerance", "1e-30")
    assert code == 1
    assert re.search(
        r"FAILED: largest relative error \S+ \(layers\.\d+\.\w+\) > tolerance 1e-30", stdout
    )


def test_takes_the_loss_and_widths_from_a_config(tmp_path: Path) -> None:
    config = tmp_path / "small.yaml"
    config.write_text(
        yaml.safe_dump({"loss": "bce", "model": {"hidden": [5]}, "data": {"grayscale": True}})
    )
    code, stdout, stderr = gradcheck("--config", config)
    assert code == 0, stderr
    assert "network 36 → 5 → 1, bce loss" in stdout
    assert list(layer_lines(stdout)) == [
        "layers.0.weight",
        "layers.0.bias",
        "layers.2.weight",
        "layers.2.bias",
    ]


def test_a_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("loss: hinge\n")
    code, _, stderr = gradcheck("--config", config)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "loss" in lines[0]
