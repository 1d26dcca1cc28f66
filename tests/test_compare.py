"""Comparisons: grid expansion, labels, shared seed, scores, and `catdog compare` end to end."""

import csv
import math
from pathlib import Path

import pytest
import yaml
from PIL import Image

from catdog.compare import differing_keys, flatten, parse_grid, plan, shared_data
from catdog.config import ConfigError, load_config
from catdog.experiment import run
from catdog.runs import fresh_folder, read_metrics
from catdog.scoreboard import DEFAULT_TARGET, markdown, score
from tests.helpers import REPO, assert_one_error_line, catdog, resume

ENV = {"PYTHONPATH": str(REPO)}  # the checkout under test, not an installed copy


def write_config(path: Path, **sections: object) -> Path:
    path.write_text(yaml.safe_dump(sections))
    return path


def tiny_config(path: Path, photos: Path, **changes: object) -> Path:
    sections: dict[str, object] = {
        "data": {"root": str(photos), "image_size": 8, "workers": 0},
        "model": {"hidden": [16]},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": 2, "batch_size": 16, "progress": False},
    }
    return write_config(path, **(sections | changes))


# --- planning ------------------------------------------------------------------------------


def test_grid_values_are_read_as_yaml() -> None:
    grid = parse_grid(
        ["optimizer.name=sgd,momentum", "model.hidden=[64],[128, 32]", "optimizer.lr=0.1,1e-2"]
    )
    assert grid == [
        ("optimizer.name", ["sgd", "momentum"]),
        ("model.hidden", [[64], [128, 32]]),
        ("optimizer.lr", [0.1, 0.01]),
    ]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["optimizer.name"], ["--grid", "KEY=V1,V2"]),
        (["optimizer.name="], ["--grid", "KEY=V1,V2"]),
        (["optimizer.lr=0.1", "optimizer.lr=0.2"], ["optimizer.lr", "twice"]),
        (["model.hidden=[64,"], ["--grid model.hidden", "invalid YAML"]),
    ],
)
def test_bad_grid_options_say_what_to_do(options: list[str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as error:
        parse_grid(options)
    for word in words:
        assert word in str(error.value)


def test_several_grids_form_a_product_in_order(tmp_path: Path) -> None:
    base = write_config(tmp_path / "base.yaml", optimizer={"name": "momentum", "lr": 0.1})
    runs = plan([base], grid=["optimizer.beta=0.5,0.9", "optimizer.formulation=ema,classic"])
    assert [
        (r.config.optimizer.model_extra["beta"], r.config.optimizer.model_extra["formulation"])
        for r in runs
    ] == [
        (0.5, "ema"),
        (0.5, "classic"),
        (0.9, "ema"),
        (0.9, "classic"),
    ]
    assert runs[1].label == "optimizer.beta=0.5, optimizer.formulation=classic"
    assert [r.folder for r in runs] == [
        "01-0.5-ema",
        "02-0.5-classic",
        "03-0.9-ema",
        "04-0.9-classic",
    ]


def test_every_run_takes_the_first_configs_seed(tmp_path: Path) -> None:
    first = write_config(tmp_path / "first.yaml", seed=3, train={"epochs": 2})
    second = write_config(tmp_path / "second.yaml", seed=8, train={"epochs": 4})
    runs = plan([first, second], overrides=["train.batch_size=16"], grid=["optimizer.lr=0.1,0.2"])
    assert len(runs) == 4
    assert {r.config.seed for r in runs} == {3}
    assert {r.config.train.batch_size for r in runs} == {16}
    assert [r.label for r in runs] == [
        "optimizer.lr=0.1, train.epochs=2",
        "optimizer.lr=0.2, train.epochs=2",
        "optimizer.lr=0.1, train.epochs=4",
        "optimizer.lr=0.2, train.epochs=4",
    ]
    # --set applies before the seed is read: it can choose the shared seed.
    assert {r.config.seed for r in plan([first, second], overrides=["seed=5"])} == {5}


def test_labels_name_only_what_differs_and_fall_back_to_the_file_name(tmp_path: Path) -> None:
    alone = write_config(tmp_path / "alone.yaml", optimizer={"name": "sgd", "lr": 0.1})
    assert [r.label for r in plan([alone])] == ["alone"]
    twin = write_config(tmp_path / "twin.yaml", optimizer={"name": "sgd", "lr": 0.1})
    assert [r.label for r in plan([alone, twin])] == ["alone", "twin"]
    assert [r.label for r in plan([alone, alone])] == ["alone", "alone (run 2)"]


def test_the_article_configs_are_labelled_by_their_differences() -> None:
    names = ["sgd", "momentum-ema", "momentum-classic", "nesterov"]
    runs = plan([REPO / "configs" / f"{name}.yaml" for name in names])
    labels = dict(zip(names, (r.label for r in runs), strict=True))
    assert "optimizer.name=sgd" in labels["sgd"] and "formulation" not in labels["sgd"]
    assert "optimizer.name=momentum" in labels["momentum-ema"]
    assert "optimizer.formulation=ema" in labels["momentum-ema"]
    assert "optimizer.formulation=classic" in labels["momentum-classic"]
    assert "optimizer.name=nesterov" in labels["nesterov"]
    assert all("output." not in label for label in labels.values())


ARTICLE_CONFIGS = [
    "sgd.yaml",
    "momentum-ema.yaml",
    "momentum-classic.yaml",
    "momentum-bias-corrected.yaml",
    "nesterov.yaml",
    "rmsprop.yaml",
    "adam.yaml",
    "compare.yaml",
]


@pytest.mark.parametrize("name", ARTICLE_CONFIGS)
def test_the_article_configs_are_valid_and_read_the_demo_photos(name: str) -> None:
    config = load_config(REPO / "configs" / name)
    assert config.data.root == "data/demo"
    assert config.optimizer.name == name.removesuffix(".yaml").split("-")[0].replace(
        "compare", "sgd"
    )


def test_differing_keys_count_a_missing_key_and_tell_types_apart() -> None:
    configs = [
        flatten({"optimizer": {"name": "sgd", "lr": 1}, "output": {"name": "a"}, "seed": 0}),
        flatten(
            {
                "optimizer": {"name": "sgd", "lr": 1.0, "beta": 0.9},
                "output": {"name": "b"},
                "seed": 0,
            }
        ),
    ]
    assert configs[0] == {"optimizer.name": "sgd", "optimizer.lr": 1, "output.name": "a", "seed": 0}
    assert differing_keys(configs) == ["optimizer.lr", "optimizer.beta"]


def test_a_comparison_folder_is_never_reused(tmp_path: Path) -> None:
    first = fresh_folder(tmp_path, "same", "--out-dir")
    (first / "keep.txt").write_text("x")
    second = fresh_folder(tmp_path, "same", "--out-dir")
    assert second != first and second.is_dir() and not any(second.iterdir())
    assert (first / "keep.txt").read_text() == "x"


def test_photos_are_decoded_once_per_data_section(demo_photos: Path, tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "c.yaml", demo_photos)
    runs = plan(
        [config],
        grid=[
            "optimizer.name=sgd,momentum",
            "data.image_size=8,12",
            "data.augment.hflip=false,true",
        ],
    )
    prepared: dict = {}
    data = [shared_data(r.config, prepared) for r in runs]
    assert len(prepared) == 2  # one per image size; optimizer and augmentation don't matter
    by_size = {r.config.data.image_size: d for r, d in zip(runs, data, strict=True)}
    assert all(d is by_size[r.config.data.image_size] for r, d in zip(runs, data, strict=True))
    assert by_size[8].images.pixels.shape[-1] == 8 and by_size[12].images.pixels.shape[-1] == 12


# --- scores --------------------------------------------------------------------------------


def rows(*epochs: tuple[float, float, float]) -> list[dict[str, float]]:
    """(val_loss, val_accuracy, elapsed) per epoch."""
    return [
        {
            "epoch": i,
            "train_loss": loss + 0.1,
            "val_loss": loss,
            "val_accuracy": acc,
            "lr": 0.1,
            "seconds": 1.0,
            "elapsed": t,
        }
        for i, (loss, acc, t) in enumerate(epochs, start=1)
    ]


def test_scores_read_off_the_metrics() -> None:
    fast = rows((0.30, 0.60, 1.0), (0.20, 0.80, 2.0), (0.25, 0.75, 3.0))
    slow = rows((0.40, 0.55, 1.5), (0.35, 0.60, 3.0), (0.28, 0.70, 4.5))
    board = score(
        [("fast", Path("runs/1-fast"), fast, None), ("slow", Path("runs/2-slow"), slow, None)]
    )
    assert board.target_loss == 0.28 and board.target_source == DEFAULT_TARGET  # the worst best
    first, second = board.runs
    assert (first.best_accuracy, first.best_accuracy_epoch, first.final_accuracy) == (0.80, 2, 0.75)
    assert (first.best_loss, first.final_loss, first.epochs, first.seconds) == (0.20, 0.25, 3, 3.0)
    assert (first.epochs_to_target, first.seconds_to_target) == (2, 2.0)
    assert (second.epochs_to_target, second.seconds_to_target) == (3, 4.5)
    assert first.folder == "1-fast" and not first.diverged

    given = score(
        [("fast", Path("f"), fast, None), ("slow", Path("s"), slow, None)], target_loss=0.22
    )
    assert given.target_source == "--target-loss"
    assert given.runs[0].epochs_to_target == 2 and given.runs[1].epochs_to_target is None
    table = markdown(given)
    assert "Target validation loss: 0.2200, --target-loss." in table
    assert "| slow | 70.00% (3) | 70.00% | 0.2800 | 0.2800 | — | — | 4.5 |" in table


def test_a_run_that_diverged_before_its_first_epoch_scores_nothing() -> None:
    board = score(
        [("ok", Path("a"), rows((0.3, 0.6, 1.0)), None), ("boom", Path("b"), [], "loss became nan")]
    )
    assert board.target_loss == 0.3
    boom = board.runs[1]
    assert boom.diverged and boom.epochs == 0 and math.isnan(boom.best_accuracy)
    assert "| boom (diverged) | — |" in markdown(board)


# --- the command ---------------------------------------------------------------------------


def test_a_single_run_draws_its_curves_and_redraws_them_on_resume(
    demo_photos: Path, tmp_path: Path
) -> None:
    path = tiny_config(tmp_path / "c.yaml", demo_photos)
    config = load_config(path, [f"output.dir={tmp_path / 'runs'}", "train.epochs=1"])
    summary = run(config, "single")
    with Image.open(summary.run_dir / "curves.png") as image:
        assert image.format == "PNG" and image.size == (1000, 400)
    before = (summary.run_dir / "curves.png").read_bytes()
    longer = config.model_copy(update={"train": config.train.model_copy(update={"epochs": 3})})
    resume(longer, summary.run_dir)
    assert (summary.run_dir / "curves.png").read_bytes() != before  # now three epochs


@pytest.fixture(scope="module")
def comparison(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("compare")
    first = tiny_config(tmp / "first.yaml", demo_photos)
    second = write_config(
        tmp / "second.yaml",
        **(
            yaml.safe_load(first.read_text())
            | {"seed": 9, "train": {"epochs": 3, "batch_size": 16, "progress": False}}
        ),
    )
    result = catdog(
        "compare",
        first,
        second,
        "--grid",
        "optimizer.name=sgd,momentum",
        "--out-dir",
        tmp / "out",
        "--name",
        "demo",
        cwd=REPO,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr
    (folder,) = (tmp / "out").iterdir()
    return folder, result.stdout


def summary_rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "summary.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def test_compare_writes_one_folder_with_a_subfolder_per_run(comparison: tuple[Path, str]) -> None:
    folder, stdout = comparison
    assert folder.name.startswith("demo-")
    runs = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert runs == ["01-sgd-2", "02-momentum-2", "03-sgd-3", "04-momentum-3"]
    for run_name in runs:
        for name in ("config.yaml", "metrics.csv", "best.pt", "last.pt", "curves.png"):
            assert (folder / run_name / name).is_file(), (run_name, name)
        with Image.open(folder / run_name / "curves.png") as image:
            assert image.format == "PNG" and image.size == (1000, 400)
    with Image.open(folder / "comparison.png") as image:
        # Two rows of panels: per epoch and per second, then the per-step training loss.
        assert image.format == "PNG" and image.size[0] == 1500 and 900 < image.size[1] < 1300
    assert 10_000 < (folder / "comparison.png").stat().st_size < 300_000
    assert f"comparison: {folder}" in stdout


def test_runs_share_the_seed_weights_and_split(comparison: tuple[Path, str]) -> None:
    folder, _ = comparison
    run_dirs = [path for path in folder.iterdir() if path.is_dir()]
    assert {load_config(run_dir / "config.yaml").seed for run_dir in run_dirs} == {0}

    def untimed(run_name: str) -> list[dict[str, float]]:
        return [
            {k: v for k, v in r.items() if k not in ("seconds", "elapsed")}
            for r in read_metrics(folder / run_name / "metrics.csv")
        ]

    # Pairs that differ only in train.epochs: the same start gives the same first two epochs.
    assert untimed("03-sgd-3")[:2] == untimed("01-sgd-2")
    assert untimed("04-momentum-3")[:2] == untimed("02-momentum-2")
    assert untimed("01-sgd-2") != untimed("02-momentum-2")


def test_summary_rows_match_the_runs_metrics(comparison: tuple[Path, str]) -> None:
    folder, stdout = comparison
    summary = summary_rows(folder)
    assert [row["label"] for row in summary] == [
        "optimizer.name=sgd, train.epochs=2",
        "optimizer.name=momentum, train.epochs=2",
        "optimizer.name=sgd, train.epochs=3",
        "optimizer.name=momentum, train.epochs=3",
    ]
    target = max(
        min(r["val_loss"] for r in read_metrics(folder / row["folder"] / "metrics.csv"))
        for row in summary
    )
    for row in summary:
        metrics = read_metrics(folder / row["folder"] / "metrics.csv")
        assert float(row["best_accuracy"]) == max(r["val_accuracy"] for r in metrics)
        assert float(row["final_accuracy"]) == metrics[-1]["val_accuracy"]
        assert float(row["best_loss"]) == min(r["val_loss"] for r in metrics)
        assert int(row["epochs"]) == len(metrics)
        assert float(row["target_loss"]) == target
        reached = next(r for r in metrics if r["val_loss"] <= target)  # every run reaches it
        assert int(row["epochs_to_target"]) == reached["epoch"]
        assert float(row["seconds_to_target"]) == reached["elapsed"]
        assert float(row["seconds"]) == metrics[-1]["elapsed"]
        assert row["label"] in stdout
    markdown_text = (folder / "summary.md").read_text()
    assert (
        "the worst run's best validation loss" in markdown_text and "the worst run's best" in stdout
    )
    assert markdown_text.count("| optimizer.name=") == 4


def test_a_diverging_run_is_recorded_and_the_others_still_run(
    demo_photos: Path, tmp_path: Path
) -> None:
    config = tiny_config(
        tmp_path / "c.yaml",
        demo_photos,
        loss="bce",
        train={"epochs": 1, "batch_size": 16, "progress": False},
    )
    result = catdog(
        "compare",
        config,
        "--grid",
        "optimizer.lr=0.1,1e30",
        "--out-dir",
        tmp_path / "out",
        cwd=REPO,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr
    assert "diverged" in result.stderr
    (folder,) = (tmp_path / "out").iterdir()
    assert folder.name.startswith("c-")
    summary = summary_rows(folder)
    assert [row["diverged"] for row in summary] == ["False", "True"]
    assert summary[0]["epochs"] == "1" and summary[1]["epochs"] == "0"
    assert (folder / "comparison.png").is_file()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--grid", "optimizer.name"], ["--grid", "KEY=V1,V2"]),
        (
            ["--grid", "optimizer.nam=sgd,momentum"],
            ["with --grid optimizer.nam=sgd", "optimizer.nam", "not taken"],
        ),
        (["--grid", "optimizer.name=sgd,adamw"], ["adamw", "with --grid"]),
        (
            ["--grid", "optimizer.lr=0.1,0.2", "--set", "data.val_fraction=0"],
            ["optimizer.lr=0.1", "data.val_fraction 0", "hold some out"],
        ),
    ],
)
def test_bad_compare_input_is_one_line_and_exit_2(
    args: list[str], words: list[str], tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.yaml", optimizer={"name": "sgd", "lr": 0.1})
    result = catdog("compare", config, *args, "--out-dir", tmp_path / "out", cwd=REPO, env=ENV)
    assert_one_error_line(result, *words)
    assert not (tmp_path / "out").exists()  # nothing is made before the plan is valid
