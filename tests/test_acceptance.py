"""Acceptance: a few epochs on 6,000 real Kaggle photos beat chance, through the real CLI."""

import json
from pathlib import Path

import pytest

from tests.helpers import catdog


@pytest.mark.slow
def test_a_few_epochs_on_real_photos_beat_58_percent(real_photos: Path, tmp_path: Path) -> None:
    trained = catdog(
        "train",
        "--set", f"data.root={real_photos}",
        "--set", "data.image_size=32",
        "--set", "data.augment.hflip=true",
        "--set", "loss=bce",
        "--set", "optimizer.name=adam",
        "--set", "optimizer.lr=0.001",
        "--set", "train.epochs=5",
        "--set", "train.progress=false",
        "--set", f"output.dir={tmp_path}",
        "--set", "output.name=real",
        timeout=1800,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    result = catdog("evaluate", tmp_path / "real", "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["count"] == 1200  # 20% of 6,000, stratified
    assert report["accuracy"] > 0.58, report
