"""`catdog tune`: the search space, bad input, a seeded tune that repeats exactly, Ctrl-C and
resume equal to an uninterrupted tune, and two processes sharing one journal file."""

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from catdog.errors import ConfigError
from catdog.runs import read_metrics
from catdog.search_space import parse_space
from tests.helpers import REPO, assert_one_error_line, catdog, write_tiny_config

ENV = {"PYTHONPATH": str(REPO)}
BASE = {"optimizer": {"name": "momentum", "lr": 0.1, "beta": 0.9}}


def test_the_space_reads_log_ranges_uniform_ranges_integers_and_choices() -> None:
    dims = parse_space(
        [
            "optimizer.lr=log:1e-5:1",
            "optimizer.beta=0.8:0.99",
            "train.batch_size=16:128",
            "model.hidden=[256],[512,128]",
        ],
        BASE,
    )
    lr, beta, batch, hidden = dims
    assert (lr.low, lr.high, lr.log, lr.integer) == (1e-5, 1.0, True, False)
    assert (beta.low, beta.high, beta.log) == (0.8, 0.99, False)
    assert batch.integer and (batch.low, batch.high) == (16, 128)
    assert hidden.choices == ([256], [512, 128])


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("optimizer.lrr=log:1e-5:1", ["optimizer.lrr", "did you mean 'optimizer.lr'"]),
        ("model.hiden=[64],[32]", ["model.hiden", "unknown key"]),
        ("optimizer.lr=1:0.1", ["optimizer.lr", "low end 1 must be below"]),
        ("optimizer.lr=0.5:0.5", ["optimizer.lr", "must be below"]),
        ("optimizer.lr=log:0:1", ["optimizer.lr", "log range must stay above 0"]),
        ("optimizer.lr=log:-1:1", ["log range must stay above 0"]),
        ("optimizer.name=", ["optimizer.name", "empty choice list"]),
        ("optimizer.beta=0.5:2", ["beta"]),  # the optimizer refuses β = 2
        ("optimizer.lr", ["KEY=SPEC"]),
    ],
)
def test_bad_spaces_are_one_line_naming_the_key(option: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as error:
        parse_space([option], BASE)
    for word in words:
        assert word in str(error.value)


# --- the command ----------------------------------------------------------------------------------


def tiny(tmp_path: Path, photos: Path, epochs: int = 3) -> Path:
    return write_tiny_config(tmp_path, photos, epochs, "t.yaml")


SPACE = ["--space", "optimizer.lr=log:1e-4:1"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--space", "optimizer.lrr=log:1e-5:1"], ["optimizer.lrr"]),
        (["--space", "optimizer.lr=log:0:1"], ["above 0"]),
        (["--space", "optimizer.lr=1:0.5"], ["must be below"]),
        (["--space", "model.hidden="], ["empty choice list"]),
        ([*SPACE, "--trials", "0"], ["--trials 0"]),
        ([*SPACE, "--storage", "sqlite:////no/such/folder/x.db"], ["--storage", "cannot open"]),
        ([*SPACE, "--storage", "/no/such/folder/x.journal"], ["--storage", "cannot open"]),
        ([*SPACE, "--objective", "accuracy"], ["--objective", "val_accuracy"]),
        ([*SPACE, "--set", "data.val_fraction=0"], ["data.val_fraction 0", "hold some out"]),
    ],
)
def test_bad_tune_input_is_one_line_exit_2_and_writes_nothing(
    args: list[str], words: list[str], tmp_path: Path, demo_photos: Path
) -> None:
    out = tmp_path / "tunes"
    result = catdog("tune", tiny(tmp_path, demo_photos), *args, "--out-dir", out, env=ENV)
    assert_one_error_line(result, *words)
    assert not out.exists()


def test_resume_refuses_a_folder_that_is_not_a_tune(tmp_path: Path) -> None:
    result = catdog("tune", "--resume", tmp_path, env=ENV)
    assert result.returncode == 2
    assert "not a tune folder" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def trials_table(folder: Path) -> list[dict[str, str]]:
    """trials.csv without what a clock or a folder name changes."""
    with (folder / "trials.csv").open(newline="") as file:
        return [
            {k: v for k, v in row.items() if k not in ("seconds", "run_dir")}
            for row in csv.DictReader(file)
        ]


def untimed_metrics(folder: Path) -> dict[str, list[dict[str, float]]]:
    return {
        trial.name: [
            {k: v for k, v in row.items() if k not in ("seconds", "elapsed")}
            for row in read_metrics(trial / "metrics.csv")
        ]
        for trial in sorted((folder / "trials").iterdir())
    }


def run_tune(config: Path, out: Path, *extra: str) -> Path:
    result = catdog("tune", config, *SPACE, "--trials", "6", "--out-dir", out, *extra, env=ENV)
    assert result.returncode == 0, result.stderr
    (folder,) = out.iterdir()
    return folder


@pytest.fixture(scope="module")
def reference(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One uninterrupted seeded tune, and its config."""
    tmp = tmp_path_factory.mktemp("tune")
    config = tiny(tmp, demo_photos)
    return run_tune(config, tmp / "a"), config


def test_a_tune_writes_trials_a_picture_and_a_best_config(reference: tuple[Path, Path]) -> None:
    folder, _ = reference
    table = trials_table(folder)
    assert [row["number"] for row in table] == [str(n) for n in range(6)]
    assert {row["state"] for row in table} <= {"COMPLETE", "PRUNED"}
    complete = [row for row in table if row["state"] == "COMPLETE"]
    best = min(complete, key=lambda row: float(row["value"]))
    tuned = yaml.safe_load((folder / "best.yaml").read_text())
    assert tuned["optimizer"]["lr"] == float(best["optimizer.lr"]) and "output" not in tuned
    for row in complete:  # the objective is the trial's lowest validation loss
        metrics = read_metrics(folder / "trials" / f"{int(row['number']):03d}" / "metrics.csv")
        assert float(row["value"]) == min(r["val_loss"] for r in metrics)
    assert (folder / "tune.png").stat().st_size > 10_000


def test_best_yaml_is_a_config_train_takes(reference: tuple[Path, Path], tmp_path: Path) -> None:
    folder, _ = reference
    result = catdog(
        "train", "--config", folder / "best.yaml", "--set", "train.epochs=1",
        "--set", f"output.dir={tmp_path}", env=ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_a_seeded_tune_repeats_exactly(reference: tuple[Path, Path], tmp_path: Path) -> None:
    folder, config = reference
    again = run_tune(config, tmp_path / "b")
    assert trials_table(again) == trials_table(folder)
    assert untimed_metrics(again) == untimed_metrics(folder)
    assert (again / "best.yaml").read_text() == (folder / "best.yaml").read_text()


def test_ctrl_c_then_resume_equals_the_uninterrupted_tune(
    reference: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, config = reference
    out = tmp_path / "c"
    command = [sys.executable, "-m", "catdog", "tune", str(config), *SPACE, "--trials", "6",
               "--out-dir", str(out)]  # fmt: skip
    process = subprocess.Popen(command, env={**__import__("os").environ, **ENV}, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.glob("*/trials/002/metrics.csv")) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    (stopped,) = out.iterdir()
    assert f"resume with: catdog tune --resume {stopped}" in stderr
    assert (stopped / "trials.csv").is_file() and (stopped / "tune.png").is_file()
    finished = [row for row in trials_table(stopped) if row["state"] != "RUNNING"]
    assert 2 <= len(finished) < 6

    result = catdog("tune", "--resume", stopped, env=ENV)
    assert result.returncode == 0, result.stderr
    assert trials_table(stopped) == trials_table(folder)
    assert untimed_metrics(stopped) == untimed_metrics(folder)
    assert (stopped / "best.yaml").read_text() == (folder / "best.yaml").read_text()


def test_two_processes_share_one_journal_and_finish_the_trials_without_duplicates(
    tmp_path: Path, demo_photos: Path
) -> None:
    config = tiny(tmp_path, demo_photos, epochs=4)  # long enough that both take trials
    journal = tmp_path / "shared.journal"
    command = [sys.executable, "-m", "catdog", "tune", str(config), *SPACE, "--trials", "8",
               "--storage", str(journal), "--study-name", "shared"]  # fmt: skip
    env = {**__import__("os").environ, **ENV}
    processes = [
        subprocess.Popen([*command, "--out-dir", str(tmp_path / f"p{k}")], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for k in range(2)
    ]  # fmt: skip
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert sorted(t.number for t in done) == list(range(8))
    assert len({t.params["optimizer.lr"] for t in done}) == 8  # no trial ran twice
    ran = {t.user_attrs["run_dir"] for t in done}
    assert len(ran) == 8 and all(Path(r).parent.parent.parent.name in ("p0", "p1") for r in ran)
    assert {Path(r).parent.parent.parent.name for r in ran} == {"p0", "p1"}  # both worked


def test_holdout_photos_are_kept_out_of_the_trials_and_measure_the_best(
    tmp_path: Path, demo_photos: Path
) -> None:
    config = tiny(tmp_path, demo_photos, epochs=1)
    out = tmp_path / "h"
    result = catdog(
        "tune", config, *SPACE, "--trials", "2", "--holdout", "0.5", "--out-dir", out, env=ENV
    )
    assert result.returncode == 0, result.stderr
    # 24 validation photos (12 per class): 6 per class held out, the trials see the other 12.
    assert "best trial on the 12 holdout photos: accuracy" in result.stdout
