"""`evaluate --report` and `--json`'s auc, log_loss, ece, checked by hand on real JPEGs."""

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catdog.images import decode_photo
from catdog.report import CAPTION, TILE, side_by_side
from tests.helpers import catdog, train_tiny_run

REPORT_FILES = {
    "top_losses.png",
    "confident_mistakes.png",
    "roc.png",
    "calibration.png",
    "predictions.csv",
}


@pytest.fixture(scope="module")
def run(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(demo_photos, tmp_path_factory.mktemp("runs"), "tiny")


def labelled_folder(real_photos: Path, folder: Path, cats: int, dogs: int) -> Path:
    folder.mkdir()
    for name, count in (("cat", cats), ("dog", dogs)):
        for k in range(1, count + 1):
            shutil.copyfile(real_photos / f"{name}.{k}.jpg", folder / f"{name}.{k}.jpg")
    return folder


def by_hand(labels: list[int], p_dog: list[float]) -> dict[str, float]:
    """AUC over all dog-cat pairs, mean log-loss, and ECE over 10 equal-width P(dog) bins."""
    dogs = [p for y, p in zip(labels, p_dog, strict=True) if y]
    cats = [p for y, p in zip(labels, p_dog, strict=True) if not y]
    pairs = [(d > c) + 0.5 * (d == c) for d in dogs for c in cats]
    losses = [-math.log(p if y else 1 - p) for y, p in zip(labels, p_dog, strict=True)]
    bins: dict[int, list[tuple[int, float]]] = {}
    for y, p in zip(labels, p_dog, strict=True):
        bins.setdefault(min(int(p * 10), 9), []).append((y, p))
    ece = sum(
        len(b) / len(labels) * abs(sum(y for y, _ in b) / len(b) - sum(p for _, p in b) / len(b))
        for b in bins.values()
    )
    return {"auc": sum(pairs) / len(pairs), "log_loss": sum(losses) / len(losses), "ece": ece}


def test_report_files_and_json_metrics_match_a_hand_computation(
    run: Path, real_photos: Path, tmp_path: Path
) -> None:
    folder = labelled_folder(real_photos, tmp_path / "photos", cats=7, dogs=6)
    report = tmp_path / "report"
    result = catdog("evaluate", run, "--data", folder, "--report", report, "--json")
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    assert {path.name for path in report.iterdir()} == REPORT_FILES
    for name in REPORT_FILES - {"predictions.csv"}:
        with Image.open(report / name) as image:
            assert image.format == "PNG" and min(image.size) > 100
    rows = list(csv.DictReader((report / "predictions.csv").open()))
    assert list(rows[0]) == ["path", "label", "p_dog", "loss"] and len(rows) == 13
    assert {Path(row["path"]).name for row in rows} == {p.name for p in folder.iterdir()}
    labels = [int(row["label"] == "dog") for row in rows]
    assert labels == [int(Path(row["path"]).name.startswith("dog")) for row in rows]
    p_dog = [float(row["p_dog"]) for row in rows]
    for row, y, p in zip(rows, labels, p_dog, strict=True):
        assert float(row["loss"]) == pytest.approx(-math.log(p if y else 1 - p), abs=1e-5)
    expected = by_hand(labels, p_dog)
    for key in ("auc", "log_loss", "ece"):
        assert measured[key] == pytest.approx(expected[key], abs=1e-5), key
    assert measured["count"] == 13
    # accuracy by the same rule the labels come from: dog when P(dog) >= 0.5
    right = sum((p >= 0.5) == bool(y) for y, p in zip(labels, p_dog, strict=True))
    assert measured["accuracy"] == pytest.approx(right / 13, abs=1e-4)  # --json rounds it

    # The predictions agree with `catdog predict` on the same photos.
    predicted = catdog("predict", run, folder, "--format", "json")
    assert predicted.returncode == 0, predicted.stderr
    answers = {r["path"]: r["p_dog"] for r in json.loads(predicted.stdout)}
    for row in rows:
        assert answers[row["path"]] == pytest.approx(float(row["p_dog"]), abs=1e-6)


def test_human_readable_evaluate_names_the_new_numbers(run: Path) -> None:
    result = catdog("evaluate", run)
    assert result.returncode == 0, result.stderr
    assert "auc:" in result.stdout and "log_loss:" in result.stdout and "ece:" in result.stdout


def test_a_one_class_folder_has_accuracy_and_no_auc(
    run: Path, real_photos: Path, tmp_path: Path
) -> None:
    folder = labelled_folder(real_photos, tmp_path / "cats", cats=5, dogs=0)
    report = tmp_path / "report"
    result = catdog("evaluate", run, "--data", folder, "--json", "--report", report)
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    assert measured["auc"] is None and measured["count"] == 5
    assert 0.0 <= measured["accuracy"] <= 1.0 and measured["log_loss"] > 0
    assert (report / "roc.png").is_file()
    readable = catdog("evaluate", run, "--data", folder)
    assert readable.returncode == 0 and "auc: n/a" in readable.stdout


def test_report_over_a_folder_in_use_is_refused_unless_forced(
    run: Path, real_photos: Path, tmp_path: Path
) -> None:
    folder = labelled_folder(real_photos, tmp_path / "photos", cats=2, dogs=2)
    report = tmp_path / "report"
    report.mkdir()
    (report / "mine.txt").write_text("keep")
    refused = catdog("evaluate", run, "--data", folder, "--report", report)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "--force" in refused.stderr
    assert [p.name for p in report.iterdir()] == ["mine.txt"]
    forced = catdog("evaluate", run, "--data", folder, "--report", report, "--force")
    assert forced.returncode == 0, forced.stderr
    assert {p.name for p in report.iterdir()} == REPORT_FILES | {"mine.txt"}
    missing = catdog("evaluate", run, "--data", folder, "--report", tmp_path / "a" / "b")
    assert missing.returncode == 2 and "no such folder" in missing.stderr


def test_each_tile_shows_the_photo_beside_the_square_the_network_saw(real_photos: Path) -> None:
    photo = real_photos / "dog.3.jpg"
    tile = side_by_side(photo, image_size=16, grayscale=False).numpy()
    assert tile.shape == (3, TILE + CAPTION, 2 * TILE)
    seen = decode_photo(photo, 16, False)
    scale = TILE // 16
    # The right half is the decoded 16-px square, each pixel a scale x scale block.
    right = tile[:, :TILE, TILE:]
    assert np.array_equal(right[:, ::scale, ::scale], seen)
    # The left half is the original photo, downscaled, its aspect kept.
    with Image.open(photo) as image:
        thumbnail = image.convert("RGB")
        thumbnail.thumbnail((TILE, TILE))
    left = tile[:, :TILE, :TILE]
    top = (TILE - thumbnail.height) // 2
    shown = left[:, top : top + thumbnail.height, (TILE - thumbnail.width) // 2 :][
        :, :, : thumbnail.width
    ]
    assert np.array_equal(shown, np.asarray(thumbnail).transpose(2, 0, 1))
