"""The article's figures: the ravine race, the EWA measurements, and `catdog figures` end to end."""

import math
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from catdog.figures import FIGURES, lag, noisy_cosine, past_weights
from catdog.ravine import CURVATURES, RACERS, Descent, descend, race, ravine
from tests.helpers import REPO, catdog


@pytest.fixture(scope="module")
def descents() -> dict[str, Descent]:
    return {descent.label: descent for descent in race()}


def test_momentum_needs_fewer_steps_than_sgd_on_the_ravine(descents: dict[str, Descent]) -> None:
    sgd = descents["SGD"].steps_to_tolerance
    assert sgd is not None
    for label in ("momentum (ema)", "momentum (classic)", "Nesterov"):
        steps = descents[label].steps_to_tolerance
        assert steps is not None and steps < sgd / 2, (label, steps, sgd)


def test_sgd_follows_the_closed_form_down_the_ravine(descents: dict[str, Descent]) -> None:
    # On a quadratic, gradient descent scales each coordinate by (1 - η·curvature) per step.
    sgd = descents["SGD"]
    lr = RACERS["SGD"][1]["lr"]
    t = torch.arange(len(sgd.path), dtype=torch.float64)
    factors = torch.tensor([1 - lr * c for c in CURVATURES], dtype=torch.float64)
    expected = torch.tensor([-10.0, 1.0], dtype=torch.float64) * factors ** t[:, None]
    torch.testing.assert_close(sgd.path, expected, rtol=1e-12, atol=1e-12)


def test_both_momentum_forms_walk_one_path(descents: dict[str, Descent]) -> None:
    # ema with lr η/(1-β) is classic with η: the figure draws one on top of the other.
    ema, classic = descents["momentum (ema)"], descents["momentum (classic)"]
    torch.testing.assert_close(ema.path, classic.path, rtol=1e-9, atol=1e-12)


def test_a_descent_stops_at_the_tolerance_or_the_step_limit() -> None:
    arrived = descend("sgd", "sgd", {"lr": 0.015}, tolerance=1e-3)
    steps = arrived.steps_to_tolerance
    assert steps is not None and len(arrived.path) == steps + 1
    assert ravine(arrived.path[-1]) < 1e-3 <= ravine(arrived.path[-2])
    stuck = descend("sgd", "sgd", {"lr": 1e-4}, max_steps=5)
    assert stuck.steps_to_tolerance is None and len(stuck.path) == 6


def test_past_weights_are_the_closed_form() -> None:
    for beta in (0.5, 0.9, 0.98):
        k = torch.arange(30, dtype=torch.float64)
        torch.testing.assert_close(past_weights(beta, 30), (1 - beta) * beta**k)


def test_lag_finds_a_known_shift() -> None:
    signal, _ = noisy_cosine(steps=300, period=80)
    delayed = torch.cat([torch.zeros(7, dtype=torch.float64), signal[:-7]])
    assert lag(delayed, signal, max_shift=40) == 7


def test_noisy_cosine_is_fixed_by_its_seed() -> None:
    signal, first = noisy_cosine(seed=3)
    _, again = noisy_cosine(seed=3)
    _, other = noisy_cosine(seed=4)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert signal[0] == 1.0 and abs(signal[100] + 1.0) < 1e-12  # period 200: cos π = -1


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("figures") / "new"
    result = catdog("figures", out, cwd=REPO, env={"PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    return out, result.stdout


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("ewa-smoothing.png", (1000, 450)),
        ("ewa-bias-correction.png", (1000, 450)),
        ("ewa-weights.png", (1100, 450)),
        ("ravine.png", (1200, 480)),
    ],
)
def test_figures_command_writes_the_pngs(
    drawn: tuple[Path, str], name: str, size: tuple[int, int]
) -> None:
    out, _ = drawn
    assert set(FIGURES) == {p.name for p in out.iterdir()}
    with Image.open(out / name) as image:
        assert image.format == "PNG" and image.size == size
        # Not a blank canvas: a plot has many colours.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50
    assert 10_000 < (out / name).stat().st_size < 300_000


def test_figures_command_prints_the_numbers(drawn: tuple[Path, str]) -> None:
    _, stdout = drawn
    steps = dict(re.findall(r"^\s+(SGD|momentum \(ema\)|Nesterov)\s.*: (\d+) steps$", stdout, re.M))
    assert int(steps["momentum (ema)"]) < int(steps["SGD"])
    assert int(steps["Nesterov"]) < int(steps["SGD"])
    # Each β's 1/e crossing is printed next to 1/(1-β).
    for beta in (0.5, 0.9, 0.98):
        crossing = re.search(rf"β = {beta}: a point (\d+) steps back .*1/\(1-β\) = (\d+)", stdout)
        assert crossing and abs(int(crossing[1]) - int(crossing[2])) <= 1
    noise = re.findall(r"noise left: std ([\d.]+) \(theory ([\d.]+)\)", stdout)
    assert len(noise) == 3
    assert all(math.isclose(float(a), float(b), rel_tol=0.35) for a, b in noise)
