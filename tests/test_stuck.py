"""The saturated-sigmoid plateau: named on a really saturated run, never on a slow learner."""

from pathlib import Path

import pytest
import yaml

from catdog.runs import read_metrics
from catdog.stuck import plateau_loss, stuck_message
from tests.helpers import REPO, catdog

ENV = {"PYTHONPATH": str(REPO)}


def row(train: float, val: float, accuracy: float) -> dict[str, float]:
    return {"epoch": 1, "train_loss": train, "val_loss": val, "val_accuracy": accuracy}


def test_two_epochs_at_the_plateau_are_named_with_cause_and_fix() -> None:
    message = stuck_message([row(0.5, 0.5, 0.5), row(0.5, 0.5, 0.5)], "mse", lr=0.01)
    assert message is not None
    for words in ("saturated", "optimizer.lr=0.01", "smaller lr", "loss: bce", "2 epochs"):
        assert words in message


@pytest.mark.parametrize(
    ("rows", "loss"),
    [
        ([row(0.5, 0.5, 0.5)], "mse"),  # one epoch only
        ([row(0.5, 0.5, 0.5), row(0.5, 0.5, 0.5)], "bce"),  # no such plateau under BCE
        ([row(0.25, 0.25, 0.5), row(0.249, 0.249, 0.52)], "mse"),  # untrained, unsaturated
        ([row(0.5, 0.5, 0.5), row(0.45, 0.40, 0.62)], "mse"),  # left the plateau
        ([row(0.5, 0.5, 0.6), row(0.5, 0.5, 0.6)], "mse"),  # better than chance
    ],
)
def test_no_warning_off_the_plateau(rows: list[dict[str, float]], loss: str) -> None:
    assert stuck_message(rows, loss) is None


def test_chance_is_the_majority_share_and_smoothing_moves_the_plateau() -> None:
    at_chance = [row(0.5, 0.5, 0.7), row(0.5, 0.5, 0.7)]
    assert stuck_message(at_chance, "mse", chance=0.7) is not None
    assert plateau_loss(0.2) == pytest.approx((0.1**2 + 0.9**2) / 2)
    smoothed = [row(plateau_loss(0.2), 0.5, 0.5)] * 2
    assert stuck_message(smoothed, "mse", label_smoothing=0.2) is not None
    assert stuck_message(smoothed, "mse") is None


# --- real runs ------------------------------------------------------------------------------------


def config(tmp_path: Path, photos: Path, lr: float, **train: object) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"root": str(photos), "image_size": 8, "workers": 0},
                "model": {"hidden": [16]},
                "loss": "mse",
                "optimizer": {"name": "sgd", "lr": lr},
                "train": {"epochs": 5, "batch_size": 16, "progress": False, "threads": 1, **train},
                "output": {"dir": str(tmp_path / "runs"), "name": "run"},
            }
        )
    )
    return path


def test_a_saturated_run_ends_early_with_its_own_exit_code(
    demo_photos: Path, tmp_path: Path
) -> None:
    # lr 1e6 under MSE drives every logit far past where σ is 0 or 1, without a NaN.
    result = catdog("train", "--config", config(tmp_path, demo_photos, 1e6), env=ENV)
    assert result.returncode == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "stuck" in lines[0] and "loss: bce" in lines[0], result.stderr
    rows = read_metrics(tmp_path / "runs" / "run" / "metrics.csv")
    # Epoch 1's training loss still averages the steps before saturation; the plateau's
    # second epoch ends the run, long before the fifth.
    assert 2 <= len(rows) <= 3
    assert all(abs(r["val_loss"] - 0.5) < 0.02 for r in rows[-2:])
    assert all(abs(r["train_loss"] - 0.5) < 0.02 for r in rows[-2:])


def test_with_stop_when_stuck_off_it_warns_once_and_runs_on(
    demo_photos: Path, tmp_path: Path
) -> None:
    path = config(tmp_path, demo_photos, 1e6, stop_when_stuck=False)
    result = catdog("train", "--config", path, env=ENV)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("stuck") == 1 and "warning:" in result.stderr
    assert len(read_metrics(tmp_path / "runs" / "run" / "metrics.csv")) == 5


def test_a_slow_but_learning_run_raises_no_alarm(demo_photos: Path, tmp_path: Path) -> None:
    result = catdog("train", "--config", config(tmp_path, demo_photos, 1e-3), env=ENV)
    assert result.returncode == 0, result.stderr
    assert "stuck" not in result.stderr
    rows = read_metrics(tmp_path / "runs" / "run" / "metrics.csv")
    assert len(rows) == 5 and rows[-1]["train_loss"] < rows[0]["train_loss"] < 0.3
