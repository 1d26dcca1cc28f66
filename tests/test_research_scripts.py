"""The research scripts drive the product: a sweep's figure is the one catdog itself reports."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

from catdog.runs import read_metrics
from tests.helpers import REPO, catdog

SCRIPTS = REPO / "scripts"


def script(name: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def recipe(photos: Path) -> list[str]:
    """`--set`s of a recipe that trains in seconds on the demo photos."""
    sets = [
        f"data.root={photos}",
        "data.image_size=8",
        "data.workers=0",
        "model.hidden=[16]",
        "train.epochs=2",
        "train.batch_size=16",
        "optimizer.lr=0.1",
    ]
    return [part for assignment in sets for part in ("--set", assignment)]


def test_research_figures_are_the_products_own(demo_photos: Path, tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    args = ["--tag", "t", "--seeds", "0", "1", "--out", tmp_path / "out", "--results", results]
    done = script("accuracy_research.py", *args, *recipe(demo_photos), cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    (line,) = results.read_text().splitlines()
    result = json.loads(line)
    assert result["tag"] == "t" and result["seeds"] == [0, 1]
    for row, seed in zip(result["runs"], (0, 1), strict=True):
        run_dir = Path(row["run"])
        assert run_dir == tmp_path / "out" / f"t-s{seed}"
        # The product's own run folder, with the recipe's settings and the seed.
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert saved["seed"] == seed and saved["model"]["hidden"] == [16]
        rows = read_metrics(run_dir / "metrics.csv")
        assert len(rows) == 2 and row["epochs"] == 2
        assert row["last"] == round(rows[-1]["val_accuracy"], 4)
        best = max(rows, key=lambda r: r["val_accuracy"])  # the first best, as best.pt keeps
        assert row["best_epoch"] == int(best["epoch"])
        evaluated = catdog("evaluate", run_dir, "--json", cwd=tmp_path)
        assert evaluated.returncode == 0, evaluated.stderr
        assert row["best_pt"] == round(json.loads(evaluated.stdout)["accuracy"], 4)
    lasts = [row["last"] for row in result["runs"]]
    assert result["last_mean"] == round(statistics.fmean(lasts), 4)
    assert result["last_std"] == round(statistics.stdev(lasts), 4)


def test_a_refit_is_scored_on_photos_set_aside(demo_photos: Path, tmp_path: Path) -> None:
    held = tmp_path / "held"
    made = script("holdout.py", demo_photos, held, "--fraction", "0.25", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    pool, judge = sorted((held / "pool").iterdir()), sorted((held / "judge").rglob("*.jpg"))
    originals = {photo.resolve() for photo in demo_photos.rglob("*.jpg")}
    assert len(pool) + len(judge) == len(originals)
    assert {p.resolve() for p in pool} | {p.resolve() for p in judge} == originals  # links
    assert {p.parent.name for p in judge} == {"cat", "dog"}
    assert all(p.name[0].isdigit() for p in judge)  # only the folder says the label
    again = script("holdout.py", demo_photos, held, cwd=tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr

    results = tmp_path / "results.jsonl"
    args = ["--tag", "r", "--out", tmp_path / "out", "--results", results]
    args += ["--judge", held / "judge"]
    sets = [*recipe(held / "pool"), "--set", "data.val_fraction=0", "--set", "eval.tta=true"]
    done = script("accuracy_research.py", *args, *sets, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(results.read_text())["runs"]
    assert "last" not in row and "best_pt" not in row  # nothing was held out of the pool
    for key, options in (("judge", ["--no-tta"]), ("judge_views", [])):
        evaluated = catdog("evaluate", row["run"], "--json", "--data", held / "judge", *options)
        assert evaluated.returncode == 0, evaluated.stderr
        report = json.loads(evaluated.stdout)
        assert report["count"] == len(judge) and report["tta"] == (key == "judge_views")
        assert row[key] == round(report["accuracy"], 4)


def test_a_bad_recipe_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = script("accuracy_research.py", "--set", "model.hidden=wide", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "model.hidden" in lines[0]


def test_a_sweep_runs_each_plan_line_through_the_product(demo_photos: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.txt"
    plan.write_text("# two recipes\nsame:\nnarrow: --set model.hidden=[8]  # wins over common\n")
    results = tmp_path / "results.jsonl"
    out = tmp_path / "out"
    args = [plan, "--jobs", "1", "--results", results, "--", "--seeds", "0", "--out", out]
    done = script("accuracy_sweep.py", *args, *recipe(demo_photos), cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    tags = [json.loads(line)["tag"] for line in results.read_text().splitlines()]
    assert tags == ["same", "narrow"]
    for tag, hidden in (("same", [16]), ("narrow", [8])):
        saved = yaml.safe_load((out / f"{tag}-s0" / "config.yaml").read_text())
        assert saved["model"]["hidden"] == hidden
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in table[2:]] == ["| same", "| narrow"]

    picture = tmp_path / "curves.png"
    drawn = script(
        "plot_learning_curves.py", picture, out / "same-s0", out / "narrow-s0", cwd=tmp_path
    )
    assert drawn.returncode == 0, drawn.stderr
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = script("plot_learning_curves.py", picture, out / "none", cwd=tmp_path)
    assert missing.returncode == 2 and "none/metrics.csv" in missing.stderr
