"""The lr range test: the valley rule on quadratics whose best lr is 1/a, and `catdog lr-find`."""

import math
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from catdog.errors import ConfigError
from catdog.lr_find import lr_schedule, range_test, valley
from catdog.optim import build_optimizer
from tests.helpers import REPO, catdog

ENV = {"PYTHONPATH": str(REPO)}


def quadratic_step(curvature: float, name: str = "sgd", noise: float = 0.0, seed: int = 0):
    """One optimizer step on f(w) = ½·a·‖w‖² (10 weights, float64); returns f before the step."""
    generator = torch.Generator().manual_seed(seed)
    w = torch.nn.Parameter(torch.ones(10, dtype=torch.float64))
    optimizer = build_optimizer(name, [w], lr=0.1)

    def step(lr: float) -> float:
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad()
        loss = 0.5 * curvature * (w * w).sum()
        loss.backward()
        if noise:
            w.grad += noise * torch.randn(10, generator=generator, dtype=torch.float64)
        optimizer.step()
        return float(loss.detach())

    return step


@pytest.mark.parametrize("curvature", [0.5, 3.0, 40.0])
def test_the_suggestion_on_a_quadratic_is_its_closed_form_best_lr(curvature: float) -> None:
    # Each SGD step multiplies f by (1 - lr·a)²: log f falls fastest at lr = 1/a, and every
    # lr over 2/a makes it grow.
    result = range_test(quadratic_step(curvature), lr_min=1e-5, lr_max=100.0, steps=120)
    assert result.suggestion == pytest.approx(1 / curvature, rel=0.15)
    assert result.stopped_early  # it blew up past 2/a and stopped
    assert result.lrs[-1] < 100.0


def test_noise_keeps_the_suggestion_below_the_stability_limit() -> None:
    result = range_test(quadratic_step(2.0, noise=0.3), lr_min=1e-5, lr_max=100.0, steps=120)
    assert 0.02 < result.suggestion < 2 / 2.0


def test_the_lrs_grow_exponentially_from_min_to_max() -> None:
    lrs = lr_schedule(1e-4, 1.0, 5)
    assert lrs == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])


def test_an_early_spike_does_not_fool_the_valley() -> None:
    # Flat at 1 with one deep dip at step 5 (the steepest slope of all), then a long steady
    # fall over steps 20-80, then a blow-up: the suggestion lies in the long fall.
    losses = iter([1.0] * 5 + [0.05] + [1.0] * 14 + [0.97**k for k in range(1, 61)] + [50.0] * 20)
    result = range_test(lambda lr: next(losses), lr_min=1e-5, lr_max=10.0, steps=100)
    lrs = lr_schedule(1e-5, 10.0, 100)
    assert lrs[20] < result.suggestion < lrs[80]  # not the dip's lr, lrs[5]
    assert valley([3.0, 1.0, 2.0, 1.5, 1.2, 1.1, 1.0, 0.5]) == (0, 7)


def test_bad_ranges_are_refused() -> None:
    with pytest.raises(ConfigError, match="lr-min"):
        range_test(quadratic_step(1.0), lr_min=1.0, lr_max=0.1)


# --- the command --------------------------------------------------------------------------------


def tiny(tmp_path: Path, photos: Path, **optimizer: object) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"root": str(photos), "image_size": 8, "workers": 0},
                "model": {"hidden": [16]},
                "optimizer": optimizer,
                "train": {"batch_size": 16, "progress": False, "threads": 1},
                "output": {"dir": str(tmp_path / "runs")},
            }
        )
    )
    return path


def test_lr_find_prints_a_suggestion_and_leaves_only_its_picture(
    demo_photos: Path, tmp_path: Path
) -> None:
    config = tiny(tmp_path, demo_photos, name="momentum", lr=0.1, beta=0.9)
    result = catdog("lr-find", "--config", config, "--steps", "60", cwd=tmp_path, env=ENV)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("suggested lr"))
    lr = float(line.split()[2])
    assert 1e-7 < lr < 10 and "valley rule" in line
    with Image.open(tmp_path / "lr_find.png") as image:
        assert image.format == "PNG"
    assert not (tmp_path / "runs").exists()  # no run folder unless asked
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "lr_find.png"]


def test_lr_find_saves_a_folder_when_asked(demo_photos: Path, tmp_path: Path) -> None:
    config = tiny(tmp_path, demo_photos, name="adam", lr=0.001)
    saved = tmp_path / "found"
    result = catdog(
        "lr-find", "--config", config, "--steps", "40", "--save", saved, cwd=tmp_path, env=ENV
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in saved.iterdir()) == ["config.yaml", "lr_find.csv", "lr_find.png"]
    rows = (saved / "lr_find.csv").read_text().splitlines()
    assert rows[0] == "step,lr,loss,smoothed" and 5 <= len(rows) - 1 <= 40
    assert math.isclose(float(rows[1].split(",")[1]), 1e-7)


def test_genetic_gets_a_one_line_refusal(demo_photos: Path, tmp_path: Path) -> None:
    config = tiny(tmp_path, demo_photos, name="genetic")
    result = catdog("lr-find", "--config", config, cwd=tmp_path, env=ENV)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "gradient-free" in lines[0] and "genetic" in lines[0]
    assert not (tmp_path / "lr_find.png").exists()
