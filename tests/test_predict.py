"""`catdog predict` in real subprocesses on real JPEGs: folders, formats, Kaggle, bad input."""

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import assert_one_error_line, catdog, train_tiny_run


@pytest.fixture(scope="module")
def run(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(demo_photos, tmp_path_factory.mktemp("runs"), "tiny")


def copy_photos(real_photos: Path, folder: Path, names: list[str], first: int = 1) -> list[Path]:
    """Copy shared photos (cat.1, dog.1, cat.2, ...) into `folder` under `names`."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for k, name in enumerate(names):
        source = real_photos / f"{('cat', 'dog')[k % 2]}.{first + k // 2}.jpg"
        copies.append(Path(shutil.copyfile(source, folder / name)))
    return copies


def test_folders_recursively_and_files_mixed_to_csv_and_json(
    run: Path, real_photos: Path, tmp_path: Path
) -> None:
    top = copy_photos(real_photos, tmp_path / "album", ["b.jpg", "a.jpg"])
    deep = copy_photos(real_photos, tmp_path / "album" / "2024" / "june", ["x.jpg"], first=5)
    (tmp_path / "album" / "notes.txt").write_text("not a photo")
    single = copy_photos(real_photos, tmp_path / "loose", ["kitty.jpeg"], first=9)
    out = tmp_path / "predictions.csv"
    result = catdog("predict", run, single[0], tmp_path / "album", "--out", out)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}: 4 predictions" in result.stdout
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    # The file first, then the folder's photos in natural order of their paths below it.
    assert [row["path"] for row in rows] == [str(p) for p in [*single, deep[0], *top[::-1]]]
    assert list(rows[0]) == ["path", "p_dog", "label", "confidence", "error"]
    for row in rows:
        p_dog = float(row["p_dog"])
        assert 0.0 <= p_dog <= 1.0 and row["error"] == ""
        assert row["label"] == ("dog" if p_dog >= 0.5 else "cat")
        assert float(row["confidence"]) == pytest.approx(max(p_dog, 1 - p_dog))

    as_json = catdog("predict", run, single[0], tmp_path / "album", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    records = json.loads(as_json.stdout)
    assert [r["path"] for r in records] == [row["path"] for row in rows]
    for record, row in zip(records, rows, strict=True):
        assert record["p_dog"] == pytest.approx(float(row["p_dog"]), abs=1e-12)
        assert record["label"] == row["label"]

    table = catdog("predict", run, tmp_path / "album")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["path", "p_dog", "label", "confidence"] and len(lines) == 4
    assert lines[1].split()[0] == str(deep[0]) and lines[1].split()[2] in ("cat", "dog")


def test_unreadable_photos_are_skipped_with_one_warning_and_listed(
    run: Path, real_photos: Path, tmp_path: Path
) -> None:
    copy_photos(real_photos, tmp_path / "mixed", ["1.jpg", "2.jpg", "3.jpg"])
    (tmp_path / "mixed" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "out.json"
    result = catdog("predict", run, tmp_path / "mixed", "--out", out)
    assert result.returncode == 0, result.stderr
    warning = result.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: 1 of 4 photos"), warning
    assert "broken.jpg" in warning[0]
    records = {Path(r["path"]).name: r for r in json.loads(out.read_text())}
    assert records["broken.jpg"]["p_dog"] is None and records["broken.jpg"]["label"] is None
    assert "cannot identify" in records["broken.jpg"]["error"]
    assert all(records[f"{k}.jpg"]["p_dog"] is not None for k in (1, 2, 3))


def test_predict_reads_the_photos_evaluate_cached(
    run: Path, real_photos: Path, tmp_path: Path, private_cache: Path
) -> None:
    folder = tmp_path / "labelled"
    copy_photos(real_photos, folder, [f"{('cat', 'dog')[k % 2]}.{k}.jpg" for k in range(6)])
    evaluated = catdog("evaluate", run, "--data", folder, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    entries = {p.name for p in private_cache.iterdir() if p.is_dir()}
    predicted = catdog("predict", run, folder, "--format", "json")
    assert predicted.returncode == 0, predicted.stderr
    assert {p.name for p in private_cache.iterdir() if p.is_dir()} == entries
    assert len(json.loads(predicted.stdout)) == 6


def test_kaggle_submission_sorts_ids_numerically_and_clips(
    run: Path, real_photos: Path, tmp_path: Path
) -> None:
    test1 = tmp_path / "test1"
    copy_photos(real_photos, test1, [f"{k}.jpg" for k in range(1, 13)])
    submission, raw = tmp_path / "submission.csv", tmp_path / "raw.json"
    clip = 0.49  # wide enough that the tiny network's answers get clipped
    result = catdog("predict", run, test1, "--kaggle", submission, "--clip", clip, "--out", raw)
    assert result.returncode == 0, result.stderr
    lines = submission.read_text().splitlines()
    assert lines[0] == "id,label"
    ids = [int(line.split(",")[0]) for line in lines[1:]]
    assert ids == list(range(1, 13))  # 1, 2, ..., 10, 11, 12: not 1, 10, 11, 12, 2
    p_dog = {int(Path(r["path"]).stem): r["p_dog"] for r in json.loads(raw.read_text())}
    clipped = 0
    for line in lines[1:]:
        number, label = line.split(",")
        expected = min(max(p_dog[int(number)], clip), 1 - clip)
        assert float(label) == pytest.approx(expected, abs=1e-6)
        clipped += expected != p_dog[int(number)]
    assert clipped > 0


def test_kaggle_default_epsilon_is_documented_and_applied(
    run: Path, real_photos: Path, tmp_path: Path
) -> None:
    from catdog.kaggle import DEFAULT_EPSILON

    help_text = catdog("predict", "--help").stdout
    assert f"{DEFAULT_EPSILON:g}" in help_text
    copy_photos(real_photos, tmp_path / "t", ["3.jpg", "1.jpg"])
    result = catdog("predict", run, tmp_path / "t", "--kaggle", tmp_path / "s.csv")
    assert result.returncode == 0, result.stderr
    assert f"[{DEFAULT_EPSILON:g}, {1 - DEFAULT_EPSILON:g}]" in result.stdout
    labels = [float(line.split(",")[1]) for line in (tmp_path / "s.csv").read_text().split()[1:]]
    assert all(DEFAULT_EPSILON <= label <= 1 - DEFAULT_EPSILON for label in labels)


@pytest.mark.parametrize("case", ["empty", "missing", "no-number", "out-folder", "out-exists"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    case: str, run: Path, real_photos: Path, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    copy_photos(real_photos, photos, ["1.jpg", "2.jpg", "dog.jpg", "cat.jpg"])
    out = tmp_path / "out.csv"
    if case == "empty":
        (tmp_path / "empty").mkdir()
        result = catdog("predict", run, photos, tmp_path / "empty", "--out", out)
        assert_one_error_line(result, str(tmp_path / "empty"), "no photos")
    elif case == "missing":
        result = catdog("predict", run, photos / "1.jpg", tmp_path / "typo.jpg", "--out", out)
        assert_one_error_line(result, str(tmp_path / "typo.jpg"), "no such file or folder")
        assert "delete or replace" not in result.stderr
    elif case == "no-number":
        result = catdog("predict", run, photos, "--kaggle", tmp_path / "submission.csv")
        # Natural order puts cat.jpg first among the names without a number.
        assert_one_error_line(result, str(photos / "cat.jpg"), "no number")
        assert not (tmp_path / "submission.csv").exists()
    elif case == "out-folder":
        result = catdog("predict", run, photos, "--out", tmp_path / "nowhere" / "out.csv")
        assert_one_error_line(result, str(tmp_path / "nowhere"), "no such folder")
        assert not (tmp_path / "nowhere").exists()
    else:
        out.write_text("keep me\n")
        result = catdog("predict", run, photos, "--out", out)
        assert_one_error_line(result, str(out), "--force")
        assert out.read_text() == "keep me\n"
        forced = catdog("predict", run, photos, "--out", out, "--force")
        assert forced.returncode == 0, forced.stderr
        assert out.read_text().startswith("path,p_dog,label,confidence,error\n")
        return
    assert not out.exists()
    assert not list(tmp_path.glob(".*tmp*"))
