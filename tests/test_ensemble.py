"""Ensembles and thread count through training, checkpoints, evaluate and predict."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from catdog.batches import Batches
from catdog.builders import build_model, prepare_data
from catdog.config import AugmentConfig, ConfigError, load_config
from catdog.experiment import run
from catdog.losses import LOSSES
from catdog.optim import build_optimizer
from catdog.runs import read_metrics
from catdog.train_step import train_step
from tests.helpers import assert_resume_matches_whole, catdog, member, small_config


def test_each_member_trains_exactly_as_it_would_alone(demo_photos: Path, tmp_path: Path) -> None:
    """Plain SGD, whose step scales with the gradient: member k of a trained ensemble must
    equal a single network started from member k's initial weights and fed the same batches."""
    config = small_config(
        demo_photos, tmp_path, "model.ensemble=3", "optimizer.name=sgd", "loss=bce",
        "train.epochs=2", "data.augment.hflip=true",
    )  # fmt: skip
    summary = run(config, "ens")
    trained = torch.load(summary.run_dir / "last.pt", weights_only=True)["model"]

    data = prepare_data(config, progress=False)
    torch.manual_seed(config.seed)  # as `train` does before building the model
    initial = build_model(config)
    batches = Batches(
        data.images.pixels, data.images.labels, data.train_indices, config.train.batch_size,
        data.mean, data.std, seed=config.seed, augment=AugmentConfig(hflip=True),
    )  # fmt: skip
    for k in range(3):
        alone = member(initial, k)
        optimizer = build_optimizer("sgd", alone.parameters(), lr=config.optimizer.lr)
        for epoch in range(config.train.epochs):
            for x, y in batches.epoch(epoch):
                train_step(alone, optimizer, LOSSES["bce"], x, y)
        for i, linear in enumerate(m for m in alone.layers if isinstance(m, nn.Linear)):
            index = 2 * i  # Linear, ReLU, Linear, …
            torch.testing.assert_close(
                trained[f"layers.{index}.weight"][k].T, linear.weight, rtol=1e-4, atol=1e-6
            )
            torch.testing.assert_close(
                trained[f"layers.{index}.bias"][k, 0], linear.bias, rtol=1e-4, atol=1e-6
            )


def test_an_ensemble_run_resumes_identically(demo_photos: Path, tmp_path: Path) -> None:
    config = small_config(
        demo_photos, tmp_path, "model.ensemble=2", "optimizer.name=adam", "optimizer.lr=0.01",
        "model.dropout=0.1", "train.epochs=3",
    )  # fmt: skip
    assert_resume_matches_whole(config, stop_after=2)


def test_train_threads_sets_torchs_thread_count(demo_photos: Path, tmp_path: Path) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        run(small_config(demo_photos, tmp_path, "train.threads=1", "train.epochs=1"), "t")
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        run(small_config(demo_photos, tmp_path, "train.epochs=1"), "default")
        assert torch.get_num_threads() == 2  # null leaves torch's setting alone
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("assignment", "key"),
    [("model.ensemble=0", "model.ensemble"), ("train.threads=0", "train.threads")],
)
def test_counts_below_one_are_refused(assignment: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^--set {key}: .*greater than or equal to 1"):
        load_config(None, [assignment])


def test_cli_trains_evaluates_and_predicts_with_an_ensemble(
    demo_photos: Path, tmp_path: Path
) -> None:
    trained = catdog(
        "train",
        "--set", f"data.root={demo_photos}",
        "--set", "data.image_size=16",
        "--set", "data.workers=0",
        "--set", "model.hidden=[32]",
        "--set", "model.ensemble=3",
        "--set", "train.threads=1",
        "--set", "train.epochs=2",
        "--set", "train.progress=false",
        "--set", f"output.dir={tmp_path}",
        "--set", "output.name=ens",
        "--set", "eval.tta_shift=1",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    chosen = {"--no-tta": (False, 0), "--tta": (True, 1), "--tta-shift=2": (False, 2)}
    for tta, views in chosen.items():
        result = catdog("evaluate", tmp_path / "ens", "--json", tta)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["count"] == 24
        assert (report["tta"], report["tta_shift"]) == views
        if views == (False, 0):  # the run measured its epochs without TTA: never the shifts
            best = max(
                read_metrics(tmp_path / "ens" / "metrics.csv"), key=lambda r: r["val_accuracy"]
            )
            # metrics.csv keeps 4 digits; the loss would move with the shifts' views
            assert report["accuracy"] == pytest.approx(best["val_accuracy"], abs=5e-5)
            assert report["loss"] == pytest.approx(best["val_loss"], abs=5e-5)
        else:
            assert 0.5 <= report["accuracy"] <= 1.0  # mirrored or shifted photos are no harder
    photo = sorted(demo_photos.glob("*.jpg"))[0]
    predicted = catdog("predict", tmp_path / "ens", photo, "--format", "csv")
    assert predicted.returncode == 0, predicted.stderr
    path, probability, label, _, _ = predicted.stdout.strip().splitlines()[1].split(",")
    assert path == str(photo) and (float(probability) >= 0.5) == (label == "dog")
