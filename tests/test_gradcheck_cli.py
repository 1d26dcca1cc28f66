"""`catdog gradcheck`: passes on our backprop, fails over a tolerance, reads a config, and lists
every layer of the config's network, saying which it can't check."""

import re
from pathlib import Path

import yaml

from tests.helpers import REPO, catdog

ENV = {"PYTHONPATH": str(REPO)}


def gradcheck(*args: str | Path) -> tuple[int, str, str]:
    result = catdog("gradcheck", *args, cwd=REPO, env=ENV)
    return result.returncode, result.stdout, result.stderr


def layer_lines(stdout: str) -> dict[str, list[str]]:
    """Table rows by parameter name: weights, abs error, rel error, backprop ms, fd ms."""
    rows = re.findall(r"^(layers\.\d+\.(?:weight|bias))\s+(.*)$", stdout, re.M)
    return {name: rest.replace(" ms", "").split() for name, rest in rows}


def table_rows(stdout: str) -> dict[str, list[str]]:
    """Every table row (parameters and buffers) by tensor name."""
    rows = re.findall(r"^((?:layers\.\d+|whitening)\.[\w.]+)\s+(\d.*)$", stdout, re.M)
    return {name: rest.replace(" ms", "").split() for name, rest in rows}


def network_section(stdout: str) -> list[list[str]]:
    """The lines between "layers:" and the blank line, split into words."""
    lines = stdout.split("layers:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return [line.split() for line in lines]


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


def test_lists_every_layer_of_an_ensemble_with_batch_norm_whitening_and_dropout(
    tmp_path: Path,
) -> None:
    config = tmp_path / "full.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"normalization": "zca", "grayscale": True, "image_size": 16},
                "model": {
                    "hidden": [64, 5],
                    "batch_norm": True,
                    "ensemble": 3,
                    "dropout": 0.2,
                    "input_dropout": 0.1,
                },
                "loss": "bce",
            }
        )
    )
    code, stdout, stderr = gradcheck("--config", config)
    assert code == 0, stderr
    assert "network 36 → 8 → 5 → 1 × 2 members, bce loss" in stdout

    # Written out by hand from the config: a layer dropped from the copy or from the report
    # changes this list.
    expected = [
        ("whitening", "Whitening", "checked: mean, matrix"),
        ("layers.0", "Dropout", "not checked: dropout (random)"),
        ("layers.1", "MemberLinear", "checked: weight, bias"),
        ("layers.2", "MemberBatchNorm", "checked: norm.weight, norm.bias"),
        ("layers.3", "ReLU", "no weights"),
        ("layers.4", "Dropout", "not checked: dropout (random)"),
        ("layers.5", "MemberLinear", "checked: weight, bias"),
        ("layers.6", "MemberBatchNorm", "checked: norm.weight, norm.bias"),
        ("layers.7", "ReLU", "no weights"),
        ("layers.8", "Dropout", "not checked: dropout (random)"),
        ("layers.9", "MemberLinear", "checked: weight, bias"),
    ]
    section = network_section(stdout)
    assert [(words[0], words[1]) for words in section] == [(n, k) for n, k, _ in expected]
    for words, (_, _, how) in zip(section, expected, strict=True):
        assert how in " ".join(words)
    assert "training mode" in " ".join(section[3]) and "training mode" in " ".join(section[7])
    assert [words[2] for words in section if words[1] == "Dropout"] == [
        "(p=0.1)",
        "(p=0.2)",
        "(p=0.2)",
    ]

    rows = table_rows(stdout)
    assert list(rows) == [
        "layers.1.weight",
        "layers.1.bias",
        "layers.2.norm.weight",
        "layers.2.norm.bias",
        "layers.5.weight",
        "layers.5.bias",
        "layers.6.norm.weight",
        "layers.6.norm.bias",
        "layers.9.weight",
        "layers.9.bias",
        "whitening.mean",
        "whitening.matrix",
    ]
    sizes = {name: int(row[0]) for name, row in rows.items()}
    assert sizes["layers.1.weight"] == 2 * 36 * 8 and sizes["whitening.matrix"] == 36 * 36
    assert sizes["layers.2.norm.weight"] == 2 * 8 and sizes["layers.9.weight"] == 2 * 5
    # The biases before batch norm have no gradient: said so, and judged by absolute error.
    assert re.search(
        r"^zero gradient, judged by absolute error <= 1e-08: layers\.1\.bias, layers\.5\.bias",
        stdout,
        re.M,
    )
    assert "passed: largest relative error" in stdout
