"""`catdog compare --seeds`: aggregation against hand-computed figures, Ctrl-C and resume equal
to an uninterrupted comparison, stuck runs marked and kept out of the target, --jobs, and
steps.csv's rows."""

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from catdog.runs import read_metrics
from catdog.step_log import read_steps
from tests.helpers import REPO, assert_one_error_line, catdog, write_tiny_config

ENV = {"PYTHONPATH": str(REPO)}
T_975_2 = 4.303  # Student's t, 2 degrees of freedom, from a printed table


def tiny(tmp_path: Path, photos: Path, epochs: int = 3, **optimizer: object) -> Path:
    return write_tiny_config(tmp_path, photos, epochs, "c.yaml", **optimizer)


def compare(*args: object, out: Path) -> Path:
    result = catdog("compare", *args, "--out-dir", out, env=ENV)
    assert result.returncode == 0, result.stderr
    (folder,) = out.iterdir()
    return folder


def table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def untimed(folder: Path) -> dict[str, list[dict[str, float]]]:
    return {
        run.name: [
            {k: v for k, v in row.items() if k not in ("seconds", "elapsed")}
            for row in read_metrics(run / "metrics.csv")
        ]
        for run in sorted(p for p in folder.iterdir() if p.is_dir() and p.name[0].isdigit())
    }


def untimed_summary(folder: Path) -> list[dict[str, str]]:
    timed = ("seconds", "seconds_to_target")
    return [
        {k: v for k, v in row.items() if k not in timed} for row in table(folder / "summary.csv")
    ]


@pytest.fixture(scope="module")
def seeded(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("seeds")
    config = tiny(tmp, demo_photos)
    folder = compare(config, "--grid", "optimizer.name=sgd,momentum", "--seeds", "3", out=tmp / "a")
    return folder, config


def test_every_run_runs_under_each_seed_seeds_outer(seeded: tuple[Path, Path]) -> None:
    folder, _ = seeded
    rows = table(folder / "summary.csv")
    assert [(r["group"], r["seed"]) for r in rows] == [
        (f"optimizer.name={name}", str(seed)) for seed in range(3) for name in ("sgd", "momentum")
    ]
    for row in rows:
        config = yaml.safe_load((folder / row["folder"] / "config.yaml").read_text())
        assert config["seed"] == int(row["seed"])


def test_the_aggregate_matches_hand_computed_means_and_intervals(seeded: tuple[Path, Path]) -> None:
    folder, _ = seeded
    rows = table(folder / "summary.csv")
    aggregate = {row["label"]: row for row in table(folder / "aggregate.csv")}
    for group in ("optimizer.name=sgd", "optimizer.name=momentum"):
        best = [
            max(r["val_accuracy"] for r in read_metrics(folder / row["folder"] / "metrics.csv"))
            for row in rows
            if row["group"] == group
        ]
        mean = sum(best) / 3
        std = math.sqrt(sum((b - mean) ** 2 for b in best) / 2)
        figures = aggregate[group]
        assert float(figures["best_accuracy_mean"]) == pytest.approx(mean, abs=1e-12)
        assert float(figures["best_accuracy_std"]) == pytest.approx(std, abs=1e-12)
        half = T_975_2 * std / math.sqrt(3)
        assert float(figures["best_accuracy_high"]) == pytest.approx(mean + half, abs=1e-3)
        assert float(figures["best_accuracy_low"]) == pytest.approx(mean - half, abs=1e-3)
    text = (folder / "summary.md").read_text()
    assert "| optimizer.name=sgd | 3 |" in text and "95% confidence interval" in text
    assert "paired by seed" in text
    assert "is significant" in text or "Significant differences" in text


def test_the_chart_has_bands_and_the_step_panel(seeded: tuple[Path, Path]) -> None:
    from PIL import Image

    folder, _ = seeded
    with Image.open(folder / "comparison.png") as image:
        assert image.size[0] == 1500 and image.size[1] > 900


def test_steps_csv_counts_every_step_and_averages_to_the_epochs_loss(
    seeded: tuple[Path, Path],
) -> None:
    folder, _ = seeded
    run = folder / "01-sgd-seed0"
    steps, metrics = read_steps(run / "steps.csv"), read_metrics(run / "metrics.csv")
    train_rows = 96  # 120 demo photos, 20% held out
    per_epoch = math.ceil(train_rows / 8)
    assert [s["step"] for s in steps] == list(range(1, 3 * per_epoch + 1))
    for epoch, row in enumerate(metrics, start=1):
        mine = [s for s in steps if epoch - 1 < s["epoch"] <= epoch]
        assert sum(s["rows"] for s in mine) == train_rows
        average = sum(s["loss"] * s["rows"] for s in mine) / train_rows
        assert average == pytest.approx(row["train_loss"], abs=1e-6)  # metrics.csv: 6 digits
    measured = [s for s in steps if not math.isnan(s["grad_norm"])]
    assert [s["step"] for s in measured] == [20]
    assert measured[0]["grad_norm"] > 0 and 0 < measured[0]["update_ratio"] < 1


def test_ctrl_c_writes_what_finished_and_resume_equals_the_whole(
    seeded: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, config = seeded
    out = tmp_path / "c"
    command = [sys.executable, "-m", "catdog", "compare", str(config), "--grid",
               "optimizer.name=sgd,momentum", "--seeds", "3", "--out-dir", str(out)]  # fmt: skip
    process = subprocess.Popen(command, env={**os.environ, **ENV}, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.glob("*/02-momentum-seed1/metrics.csv")) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    (stopped,) = out.iterdir()
    assert f"resume with: catdog compare --resume {stopped}" in stderr
    partial = table(stopped / "summary.csv")
    assert 3 <= len(partial) < 6 and (stopped / "comparison.png").is_file()

    result = catdog("compare", "--resume", stopped, env=ENV)
    assert result.returncode == 0, result.stderr
    assert untimed(stopped) == untimed(folder)
    assert untimed_summary(stopped) == untimed_summary(folder)


def test_jobs_2_gives_the_same_runs(seeded: tuple[Path, Path], tmp_path: Path) -> None:
    folder, config = seeded
    other = compare(
        config, "--grid", "optimizer.name=sgd,momentum", "--seeds", "3", "--jobs", "2",
        out=tmp_path / "j",
    )  # fmt: skip
    assert untimed(other) == untimed(folder)
    assert untimed_summary(other) == untimed_summary(folder)


def test_a_stuck_run_is_marked_and_sets_neither_target_nor_axes(
    demo_photos: Path, tmp_path: Path
) -> None:
    config = tiny(tmp_path, demo_photos, epochs=4)
    folder = compare(config, "--grid", "optimizer.lr=0.1,1e6", out=tmp_path / "s")
    rows = table(folder / "summary.csv")
    assert [r["stuck"] for r in rows] == ["False", "True"]
    learned = read_metrics(folder / rows[0]["folder"] / "metrics.csv")
    assert float(rows[0]["target_loss"]) == min(r["val_loss"] for r in learned)
    assert "(stuck)" in (folder / "summary.md").read_text()


def test_a_grid_over_seed_keeps_working(demo_photos: Path, tmp_path: Path) -> None:
    config = tiny(tmp_path, demo_photos, epochs=1)
    folder = compare(config, "--grid", "seed=0,1", out=tmp_path / "g")
    rows = table(folder / "summary.csv")
    assert [r["label"] for r in rows] == ["seed=0", "seed=1"]
    assert not (folder / "aggregate.csv").exists()  # two runs, not one run over two seeds


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--seeds", "0,1,1"], ["--seeds 0,1,1", "twice"]),
        (["--seeds", "0"], ["--seeds 0", "at least 1"]),
        (["--seeds", "a,b"], ["--seeds a,b"]),
        (["--tune", "optimizer.lr=log:0:1"], ["above 0"]),
        (["--tune", "optimizer.lr=log:1e-4:1", "--trials", "0"], ["--trials 0"]),
        (["--holdout", "0.5"], ["--holdout goes with --tune"]),
        (["--tune", "optimizer.lr=log:1e-4:1", "--holdout", "1"], ["--holdout 1"]),
        (["--jobs", "0"], ["--jobs 0"]),
    ],
)
def test_bad_compare_input_is_one_line_exit_2_and_writes_nothing(
    args: list[str], words: list[str], tmp_path: Path, demo_photos: Path
) -> None:
    out = tmp_path / "out"
    result = catdog("compare", tiny(tmp_path, demo_photos), *args, "--out-dir", out, env=ENV)
    assert_one_error_line(result, *words)
    assert not out.exists()


def test_resume_refuses_a_folder_that_is_not_a_comparison(tmp_path: Path) -> None:
    result = catdog("compare", "--resume", tmp_path, env=ENV)
    assert result.returncode == 2
    assert "not a comparison folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_compare_tune_tunes_each_run_then_runs_the_seeds(demo_photos: Path, tmp_path: Path) -> None:
    config = tiny(tmp_path, demo_photos, epochs=2)
    folder = compare(
        config, "--grid", "optimizer.name=sgd,adam", "--tune", "optimizer.lr=log:1e-4:1",
        "--trials", "3", "--seeds", "2", "--holdout", "0.5", out=tmp_path / "t",
    )  # fmt: skip
    tunes = sorted(p.name for p in folder.iterdir() if p.name.startswith("tune-"))
    assert tunes == ["tune-01-sgd", "tune-02-adam"]
    for name, tune in zip(("sgd", "adam"), tunes, strict=True):
        assert len(table(folder / tune / "trials.csv")) == 3  # the same budget for each
        best = yaml.safe_load((folder / tune / "best.yaml").read_text())["optimizer"]["lr"]
        for seed in (0, 1):
            run = next(folder.glob(f"*-{name}-seed{seed}"))
            assert yaml.safe_load((run / "config.yaml").read_text())["optimizer"]["lr"] == best
        # The tables name the lr that was trained, not the config's.
        summary = (folder / "summary.md").read_text()
        assert f"optimizer.name={name}, tuned optimizer.lr={best:.3g} |" in summary
    # Each best trial measured once on the half of the validation split no trial saw.
    held = table(folder / "holdout.csv")
    runs = [row["run"].split(",")[0] for row in held]
    assert runs == ["optimizer.name=sgd", "optimizer.name=adam"]
    from catdog.builders import prepare_data
    from catdog.config import load_config

    seed_0 = load_config(next(folder.glob("*-sgd-seed0")) / "config.yaml")
    validation = len(prepare_data(seed_0, progress=False).val_indices)
    for row in held:
        assert abs(int(row["count"]) - validation / 2) <= 1
        assert 0.0 <= float(row["accuracy"]) <= 1.0 and float(row["loss"]) > 0.0


def test_a_tuned_label_names_the_chosen_values_instead_of_the_planned_ones() -> None:
    from catdog.sweep import tuned_label

    planned = "optimizer.name=sgd, model.hidden=[512, 128], optimizer.lr=0.1"
    assert tuned_label(planned, {"optimizer.lr": 0.11700558, "model.hidden": [256]}) == (
        "optimizer.name=sgd, tuned optimizer.lr=0.117, model.hidden=[256]"
    )
    assert tuned_label("sgd", {"optimizer.lr": 0.5}) == "sgd, tuned optimizer.lr=0.5"
    assert tuned_label("optimizer.lr=0.1", {"optimizer.lr": 0.5}) == "tuned optimizer.lr=0.5"
