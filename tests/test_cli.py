"""The real CLI in subprocesses: train, evaluate, predict; one-line errors with exit code 2."""

import json
import re
from pathlib import Path

import pytest

from catdog.runs import read_metrics
from tests.helpers import REPO, TINY_RUN, assert_one_error_line, catdog


@pytest.fixture(scope="module")
def trained_run(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    result = catdog(
        "train",
        "--config",
        REPO / "configs" / "demo.yaml",
        "--set",
        f"data.root={demo_photos}",
        "--set",
        f"output.dir={runs}",
        "--set",
        "output.name=cli",
        *TINY_RUN,
    )
    assert result.returncode == 0, result.stderr
    assert "epoch   2/2" in result.stdout
    assert f"run: {runs / 'cli'}" in result.stdout
    return runs / "cli"


def test_evaluate_json_is_one_object(trained_run: Path) -> None:
    result = catdog("evaluate", trained_run, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["count"] == 24  # 20% of 60 + 60 photos
    assert sum(map(sum, report["confusion"])) == report["count"]
    # best.pt, measured again, is the best epoch's validation measurement.
    rows = read_metrics(trained_run / "metrics.csv")
    best = max(rows, key=lambda row: row["val_accuracy"])
    assert report["accuracy"] == pytest.approx(best["val_accuracy"], abs=5e-5)  # metrics.csv: 1e-4
    assert report["loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    (cats_right, _), (_, dogs_right) = report["confusion"]
    assert report["accuracy"] == pytest.approx((cats_right + dogs_right) / 24, abs=5e-5)


def test_evaluate_on_another_folder_uses_all_of_it(
    trained_run: Path, demo_photos: Path, tmp_path: Path
) -> None:
    for name in ("cat", "dog"):
        (tmp_path / name.upper()).mkdir()
        for photo in sorted(demo_photos.glob(f"{name}.*.jpg"))[:5]:
            (tmp_path / name.upper() / photo.name).write_bytes(photo.read_bytes())
    result = catdog("evaluate", trained_run, "--data", tmp_path, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["count"] == 10
    assert [sum(row) for row in report["confusion"]] == [5, 5]


def test_evaluate_human_readable(trained_run: Path) -> None:
    result = catdog("evaluate", trained_run / "best.pt")
    assert result.returncode == 0, result.stderr
    assert "accuracy:" in result.stdout and "confusion" in result.stdout


def test_predict_one_line_per_photo(trained_run: Path, demo_photos: Path) -> None:
    photos = sorted(demo_photos.glob("*.jpg"))[:3]
    result = catdog("predict", trained_run, *photos, "--format", "csv")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.strip().splitlines()
    assert header == "path,p_dog,label,confidence,error" and len(lines) == 3
    for line, photo in zip(lines, photos, strict=True):
        path, probability, label, _, _ = line.split(",")
        assert path == str(photo) and label in ("cat", "dog")
        assert (float(probability) >= 0.5) == (label == "dog")


def test_python_dash_m_and_help_lists_every_command() -> None:
    from catdog.cli import app

    commands = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]
    commands += [group.name for group in app.registered_groups]
    assert {"train", "evaluate", "predict", "compare", "make-demo-data", "demo"} <= set(commands)
    result = catdog("--help")
    assert result.returncode == 0
    listed = re.findall(r"^│ (\S+)", result.stdout, re.M) or re.findall(
        r"^  (\S+)  ", result.stdout, re.M
    )
    assert set(commands) <= set(listed), set(commands) - set(listed)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["train", "--config", "missing.yaml"], ["missing.yaml", "not found"]),
        (["train", "--set", "optimizer.lrr=0.1"], ["optimizer.lrr", "did you mean 'optimizer.lr'"]),
        (["train", "--set", "train.epochs=-1"], ["train.epochs"]),
        (["train", "--set", "data.root=/nonexistent/photos"], ["/nonexistent/photos"]),
        (["evaluate", "/nonexistent/run"], ["/nonexistent/run"]),
        (["predict", "/nonexistent/run", "x.jpg"], ["/nonexistent/run"]),
        (["train", "--resume", "/nonexistent/run"], ["/nonexistent/run"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], words: list[str], tmp_path: Path
) -> None:
    result = catdog(*args, cwd=tmp_path)
    assert_one_error_line(result, *words)
    assert "Traceback" not in result.stderr


def test_a_failed_start_leaves_no_folder_to_block_the_retry(
    demo_photos: Path, tmp_path: Path
) -> None:
    named = ["--set", f"output.dir={tmp_path}", "--set", "output.name=retry", *TINY_RUN]
    missing = catdog("train", "--set", f"data.root={tmp_path / 'typo'}", *named)
    assert missing.returncode == 2, missing.stderr
    assert not (tmp_path / "retry").exists()
    fixed = catdog("train", "--set", f"data.root={demo_photos}", *named)
    assert fixed.returncode == 0, fixed.stderr
    assert (tmp_path / "retry" / "last.pt").is_file()
