"""Acceptance: the default recipe, shortened to one network and fewer epochs, on the real photos.

The full recipe (configs/default.yaml) is too long for a test; this keeps every ingredient but
the ensemble size and the epoch count, through the real CLI. The default refits on every photo
it is given (data.val_fraction 0), so the test sets a fifth of the photos aside first, as
scripts/holdout.py does, trains on the rest and asserts a bar on the set-aside photos with the
judged command, `catdog evaluate RUN --data DIR`, set with margin below what it measured (see
docs/accuracy.md).
"""

import json
from pathlib import Path

import pytest

from catdog.data import find_photos, stratified_split
from tests.helpers import REPO, catdog

EPOCHS = 30
BAR = 0.68


def set_aside(photos: Path, folder: Path) -> tuple[Path, Path]:
    """Links: folder/pool (Kaggle's flat names) and folder/judge/{cat,dog} (20% per class)."""
    found = find_photos(photos)
    pool, judge = stratified_split(found.labels, 0.2, seed=1234)
    for rows, place in ((pool, "pool"), (judge, "judge")):
        for row in rows:
            kind = ("cat", "dog")[found.labels[row]]
            name = f"{kind}.{row}.jpg" if place == "pool" else f"{kind}/{row}.jpg"
            link = folder / place / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(found.paths[row].resolve())
    return folder / "pool", folder / "judge"


@pytest.mark.slow
def test_shortened_default_recipe_clears_the_bar(real_photos: Path, tmp_path: Path) -> None:
    pool, judge = set_aside(real_photos, tmp_path / "photos")
    trained = catdog(
        "train",
        "--config", REPO / "configs" / "default.yaml",
        "--set", f"data.root={pool}",
        "--set", "model.ensemble=1",
        "--set", f"train.epochs={EPOCHS}",
        "--set", f"train.schedule.warmup_epochs={EPOCHS * 0.05}",
        "--set", "train.threads=1",
        "--set", "train.progress=false",
        "--set", f"output.dir={tmp_path}",
        "--set", "output.name=default",
        timeout=1800,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "--data DIR" in trained.stdout  # nothing held out: the default refits on all it has
    result = catdog("evaluate", tmp_path / "default", "--json", "--data", judge, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["count"] == 1200 and report["tta"] and report["tta_shift"] == 2
    assert report["accuracy"] > BAR, report
