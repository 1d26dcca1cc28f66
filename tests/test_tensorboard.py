"""TensorBoard logging: the event files, read back with TensorBoard's own reader, hold what the
run measured (step and epoch scalars, histograms, hyperparameters with final metrics)."""

import csv
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from catdog.config import Config, load_config
from catdog.optim import build_optimizer
from tests.helpers import catdog

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)
from tensorboard.plugins.hparams import plugin_data_pb2

from catdog.tensorboard import HISTOGRAM_EVERY, TensorBoardLog


def read_events(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    return events


def scalars(events: EventAccumulator, tag: str) -> dict[int, float]:
    return {event.step: event.value for event in events.Scalars(tag)}


def session_hparams(events: EventAccumulator) -> dict[str, Any]:
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {
        name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
        for name, value in info.hparams.items()
    }


def test_steps_epochs_histograms_and_hparams_read_back(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    optimizer = build_optimizer("momentum", model.parameters(), lr=0.1, beta=0.9)
    config = load_config(None, ["optimizer.name=momentum", "optimizer.beta=0.9"])
    log = TensorBoardLog.open(tmp_path, config, model)
    x, y = torch.randn(16, 5), torch.randn(16, 1)
    expected_grad: dict[int, float] = {}
    expected_update: dict[int, float] = {}
    step, epochs, steps_per_epoch = 0, HISTOGRAM_EVERY + 1, 3
    for epoch in range(1, epochs + 1):
        for _ in range(steps_per_epoch):
            before = [p.detach().double().clone() for p in model.parameters()]
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            step += 1
            # Independent references, in float64.
            expected_grad[step] = math.sqrt(
                sum(float(p.grad.double().pow(2).sum()) for p in model.parameters())
            )
            expected_update[step] = math.sqrt(
                sum(
                    float((p.detach().double() - b).pow(2).sum())
                    for p, b in zip(model.parameters(), before, strict=True)
                )
            )
            log.step(step, {"train_loss": float(loss.detach()), "lr": 0.1})
        log.epoch(epoch, {"epoch": epoch, "val_loss": 1.0 / epoch, "val_accuracy": 0.5}, optimizer)
    log.close({"best_val_accuracy": 0.5, "final_val_loss": 1.0 / epochs})

    events = read_events(tmp_path)
    grad = scalars(events, "step/grad_norm")
    update = scalars(events, "step/update_norm")
    assert sorted(grad) == list(range(1, step + 1))
    for s in range(1, step + 1):
        assert grad[s] == pytest.approx(expected_grad[s], rel=1e-5)
        assert update[s] == pytest.approx(expected_update[s], rel=1e-5)
    assert scalars(events, "epoch/val_loss") == pytest.approx(
        {e: 1.0 / e for e in range(1, epochs + 1)}
    )
    histograms = events.Tags()["histograms"]
    assert "weights/0.weight" in histograms
    assert "optimizer/velocity/0.weight" in histograms  # momentum's state, per weight
    # The first epoch and every HISTOGRAM_EVERY-th.
    assert [h.step for h in events.Histograms("weights/0.weight")] == [1, HISTOGRAM_EVERY]
    assert scalars(events, "hparams/best_val_accuracy") == {0: 0.5}
    hparams = session_hparams(events)
    assert hparams["optimizer.name"] == "momentum"
    assert hparams["optimizer.beta"] == pytest.approx(0.9)
    assert hparams["model.hidden"] == "[512, 128]"


def test_without_tensorboard_one_line_says_how_to_install(tmp_path: Path) -> None:
    # A package named tensorboard that fails to import stands in for a missing one.
    fake = tmp_path / "hide" / "tensorboard"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no tensorboard here')\n")
    code = (
        "from catdog.tensorboard import require_tensorboard\n"
        "try:\n    require_tensorboard()\n"
        "except Exception as error:\n    print(type(error).__name__, error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(fake.parent)},
        timeout=120,
    )
    assert result.stdout.startswith("ConfigError output.tensorboard:"), result.stderr
    assert "pip install 'catdog[tensorboard]'" in result.stdout
    assert len(result.stdout.strip().splitlines()) == 1


def test_hyperparameters_are_flat_tensorboard_values() -> None:
    from catdog.config import config_dict
    from catdog.tensorboard import hyperparameters

    flat = hyperparameters(config_dict(Config()))
    assert flat["data.cache_dir"] == "null"
    assert flat["train.schedule.name"] == "constant"
    assert all(isinstance(v, bool | int | float | str) for v in flat.values())


def read_metrics_csv(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as file:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(file)]


SMALL = [
    "--set", "data.image_size=8", "--set", "model.hidden=[8]", "--set", "train.epochs=3",
    "--set", "train.batch_size=32", "--set", "train.progress=false", "--set", "data.workers=0",
    "--set", "output.tensorboard=true",
]  # fmt: skip


def test_a_trained_run_s_events_equal_its_metrics_csv(demo_photos: Path, tmp_path: Path) -> None:
    result = catdog(
        "train", "--config", "momentum-ema", "--set", f"data.root={demo_photos}",
        "--set", "output.name=tb", *SMALL, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "runs" / "tb"
    rows = read_metrics_csv(run_dir / "metrics.csv")
    events = read_events(run_dir)
    for column in ("train_loss", "val_loss", "val_accuracy", "lr", "seconds"):
        logged = scalars(events, f"epoch/{column}")
        assert logged == pytest.approx({int(r["epoch"]): r[column] for r in rows}, rel=1e-6)
    steps_per_epoch = -(-96 // 32)  # 96 training photos in batches of 32
    assert sorted(scalars(events, "step/train_loss")) == list(range(1, 3 * steps_per_epoch + 1))
    assert any(tag.startswith("optimizer/velocity/") for tag in events.Tags()["histograms"])
    best = max(rows, key=lambda r: r["val_accuracy"])
    assert scalars(events, "hparams/best_val_accuracy")[0] == pytest.approx(best["val_accuracy"])
    assert session_hparams(events)["optimizer.name"] == "momentum"


def test_compare_puts_its_runs_under_one_log_dir(demo_photos: Path, tmp_path: Path) -> None:
    result = catdog(
        "compare", "sgd", "--grid", "optimizer.lr=0.05,0.1", "--set", f"data.root={demo_photos}",
        *SMALL, "--set", "train.epochs=1", "--name", "tb", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (folder,) = (tmp_path / "comparisons").iterdir()
    assert f"tensorboard --logdir {folder.relative_to(tmp_path)}" in result.stdout
    runs = sorted(p.parent.name for p in folder.glob("*/events.out.tfevents.*"))
    assert len(runs) == 2 and len(set(runs)) == 2  # one TensorBoard run per compared run
    for run in runs:
        assert scalars(read_events(folder / run), "epoch/val_loss")


def test_asking_for_tensorboard_without_it_is_one_line(demo_photos: Path, tmp_path: Path) -> None:
    fake = tmp_path / "hide" / "tensorboard"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no tensorboard here')\n")
    result = catdog(
        "train", "--set", f"data.root={demo_photos}", *SMALL, cwd=tmp_path,
        env={"PYTHONPATH": str(fake.parent)},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: output.tensorboard: TensorBoard is not installed; install it with: "
        "pip install 'catdog[tensorboard]' (or set output.tensorboard: false)"
    ]
