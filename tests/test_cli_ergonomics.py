"""The command line as a new user meets it: shipped configs, config inspection, completion,
paths with ~ that work from any folder, the run header, and the Python API."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from catdog.config import Config, config_dict, load_config
from catdog.config_yaml import parse_yaml
from catdog.errors import ConfigError
from catdog.shipped import copy_config, resolve_config, shipped_configs, shipped_folder
from tests.helpers import REPO, TINY_RUN, catdog


def leaf_keys(data: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        if isinstance(value, dict):
            keys += leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


# --- shipped configs --------------------------------------------------------------------------


def test_the_repository_configs_are_the_shipped_ones() -> None:
    # One copy of each file: configs/ is a link into the package.
    assert (REPO / "configs").resolve() == shipped_folder().resolve()
    names = sorted(p.stem for p in (REPO / "catdog" / "configs").glob("*.yaml"))
    assert [c.name for c in shipped_configs()] == names
    assert len(names) >= 13


def test_catdog_configs_lists_each_with_a_description(tmp_path: Path) -> None:
    result = catdog("configs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [c.name for c in shipped_configs()]
    sgd = next(line for line in lines if line.startswith("sgd "))
    assert "SGD" in sgd
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)  # every one described


def test_configs_copy_writes_an_editable_file_and_never_overwrites(tmp_path: Path) -> None:
    result = catdog("configs", "copy", "sgd", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    copied = tmp_path / "sgd.yaml"
    assert copied.read_text() == (shipped_folder() / "sgd.yaml").read_text()
    again = catdog("configs", "copy", "sgd", cwd=tmp_path)
    assert again.returncode == 2
    assert "already exists" in again.stderr and "Traceback" not in again.stderr
    (tmp_path / "mine").mkdir()
    assert copy_config("adam", tmp_path / "mine") == tmp_path / "mine" / "adam.yaml"
    unknown = catdog("configs", "copy", "sdg", cwd=tmp_path)
    assert unknown.returncode == 2 and "sgd" in unknown.stderr


def test_config_name_resolves_to_shipped_and_a_path_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_config("sgd") == shipped_folder() / "sgd.yaml"
    assert resolve_config("sgd.yaml") == shipped_folder() / "sgd.yaml"
    assert resolve_config("configs/demo.yaml") == shipped_folder() / "demo.yaml"  # README's
    (tmp_path / "sgd.yaml").write_text("optimizer: {name: adam}\n")
    assert resolve_config("sgd.yaml") == Path("sgd.yaml")  # the local file wins
    with pytest.raises(ConfigError, match="catdog configs"):
        resolve_config("nope")


# --- config inspection ------------------------------------------------------------------------


def test_config_keys_lists_every_key_with_type_default_and_meaning() -> None:
    result = catdog("config", "keys")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()}
    for key in leaf_keys(config_dict(Config())):
        assert key in rows, key
    lr = rows["optimizer.lr"].split()
    assert lr[:4] == ["optimizer.lr", "float", ">", "0"] and lr[4] == "0.01"
    assert "learning rate" in rows["optimizer.lr"]
    assert "channel | zca" in rows["data.normalization"]
    assert "optimizer.beta" in rows  # the optimizers' own hyperparameters too
    # The meaning is the schema's docstring, on one line.
    assert "Mirror each photo left-right" in rows["data.augment.hflip"]


def test_config_show_is_the_resolved_yaml_marking_changes(tmp_path: Path) -> None:
    result = catdog("config", "show", "--config", "sgd", "--set", "train.epochs=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = parse_yaml(result.stdout, "show")
    assert shown == config_dict(load_config(resolve_config("sgd"), ["train.epochs=3"]))
    lines = result.stdout.splitlines()
    assert any(line.strip().startswith("epochs: 3") and "# default: 10" in line for line in lines)
    assert any(line.strip().startswith("lr: 0.1") and "# default: 0.01" in line for line in lines)
    unchanged = next(line for line in lines if line.strip().startswith("grayscale:"))
    assert "#" not in unchanged
    bad = catdog("config", "show", "--set", "train.epochs=three", cwd=tmp_path)
    assert bad.returncode == 2 and "--set" in bad.stderr


# --- completion -------------------------------------------------------------------------------


def completion_setup(tmp_path: Path, shell: str) -> tuple[Path, dict[str, str]]:
    """The generated script for `shell`, and an environment with `catdog` on the PATH."""
    script = catdog("completion", shell)
    assert script.returncode == 0, script.stderr
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "catdog"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m catdog "$@"\n')
    wrapper.chmod(0o755)
    path = tmp_path / f"catdog.{shell}"
    path.write_text(script.stdout)
    return path, {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def run_shell(argv: list[str], env: dict[str, str]) -> list[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]


def complete_in_bash(tmp_path: Path, line: str) -> list[str]:
    """COMPREPLY of the generated bash script for the command line `line` (cursor at its end)."""
    script, env = completion_setup(tmp_path, "bash")
    driver = (
        f"source {script}\n"
        'COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}\n'
        'read -ra COMP_WORDS <<< "$COMP_LINE"\n'
        '[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")\n'
        "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
        "_catdog_completion catdog\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    return run_shell(["bash", "-c", driver, "driver", line], env)


def complete_in_zsh(tmp_path: Path, line: str) -> list[str]:
    """What the generated zsh function hands `compadd` for `line`, one call a line.

    `compadd` and `compdef` exist only inside zsh's completion system (a key press in an
    interactive shell), so they are stood in for by functions that print their arguments;
    everything else is the real script in a real zsh.
    """
    script, env = completion_setup(tmp_path, "zsh")
    driver = (
        "compdef() { :; }\n"
        'compadd() { print -r -- "${(j:|:)@}"; }\n'
        "_files() { print -r -- FILES; }\n"
        f"source {script}\n"
        'words=(${(z)1}); [[ $1 == *" " ]] && words+=("")\n'
        "CURRENT=${#words}\n"
        "_catdog\n"
    )
    return run_shell(["zsh", "-fc", driver, "driver", line], env)


def complete_in_fish(tmp_path: Path, line: str) -> list[str]:
    """fish's own `complete -C LINE` with the generated script loaded: value TAB help."""
    script, env = completion_setup(tmp_path, "fish")
    return run_shell(["fish", "-c", f"source {script}; complete -C $argv[1]", line], env)


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash here")
def test_bash_completion_of_set_keys_and_values(tmp_path: Path) -> None:
    assert complete_in_bash(tmp_path, "catdog train --set optim") == ["optimizer."]
    keys = complete_in_bash(tmp_path, "catdog train --set optimizer.")
    assert "optimizer.lr=" in keys and "optimizer.beta=" in keys
    # bash splits words at "=": it is handed back the part after it.
    assert complete_in_bash(tmp_path, "catdog train --set optimizer.name=a") == ["adam"]
    assert complete_in_bash(tmp_path, "catdog train -s loss=") == ["mse", "bce"]
    assert complete_in_bash(tmp_path, "catdog tr") == ["train"]
    assert "nesterov" in complete_in_bash(tmp_path, "catdog train --config ne")


def test_completion_scripts_for_zsh_and_fish() -> None:
    for shell in ("zsh", "fish"):
        result = catdog("completion", shell)
        assert result.returncode == 0, result.stderr
        assert f"_CATDOG_COMPLETE=complete_{shell}" in result.stdout
    assert catdog("completion", "tcsh").returncode == 2


@pytest.mark.skipif(shutil.which("zsh") is None, reason="no zsh here")
def test_zsh_completion_of_set_keys_and_values(tmp_path: Path) -> None:
    # A section or a key goes on without a space (-S ''); a command or a value takes one.
    assert complete_in_zsh(tmp_path, "catdog train --set optim") == ["-S||--|optimizer."]
    (keys,) = complete_in_zsh(tmp_path, "catdog train --set optimizer.")
    assert {"optimizer.lr=", "optimizer.beta="} <= set(keys.split("|"))
    assert complete_in_zsh(tmp_path, "catdog train --set optimizer.name=a") == [
        "--|optimizer.name=adam"
    ]
    assert complete_in_zsh(tmp_path, "catdog tr") == ["--|train"]
    assert complete_in_zsh(tmp_path, "catdog train --config ne") == ["--|nesterov"]
    assert complete_in_zsh(tmp_path, "catdog evaluate /") == ["FILES"]  # zsh's own paths


@pytest.mark.skipif(shutil.which("fish") is None, reason="no fish here")
def test_fish_completion_of_set_keys_and_values(tmp_path: Path) -> None:
    assert complete_in_fish(tmp_path, "catdog train --set optim") == ["optimizer."]
    keys = [
        reply.split("\t")[0] for reply in complete_in_fish(tmp_path, "catdog train -s optimizer.")
    ]
    assert {"optimizer.lr=", "optimizer.beta="} <= set(keys)
    (adam,) = complete_in_fish(tmp_path, "catdog train --set optimizer.name=a")
    assert adam.split("\t")[0] == "optimizer.name=adam" and "rmsprop" in adam  # with its help
    assert [r.split("\t")[0] for r in complete_in_fish(tmp_path, "catdog tr")] == ["train"]


# --- paths that work from anywhere --------------------------------------------------------------


def test_tilde_in_set_data_root_is_expanded(demo_photos: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "kaggle").mkdir(parents=True)
    shutil.copytree(demo_photos, home / "kaggle" / "train")
    result = catdog(
        "train", "--config", "sgd",
        "--set", "data.root=~/kaggle/train", "--set", "output.dir=~/runs",
        "--set", "output.name=tilde", *TINY_RUN,
        cwd=tmp_path, env={"HOME": str(home)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run_dir = home / "runs" / "tilde"  # output.dir's ~ too
    saved = parse_yaml((run_dir / "config.yaml").read_text(), "config.yaml")
    assert saved["data"]["root"] == str(home / "kaggle" / "train")  # absolute, expanded
    evaluated = catdog(
        "evaluate", "~/runs/tilde", "--data=~/kaggle/train", "--json",
        cwd=tmp_path, env={"HOME": str(home)},
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    variable = catdog(
        "config", "show", "--set", "data.root=$PHOTOS/x", cwd=tmp_path, env={"PHOTOS": "/srv"}
    )
    assert "root: /srv/x" in variable.stdout


@pytest.fixture(scope="module")
def relative_run(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run made with data.root relative to its folder, as `catdog demo` makes one."""
    here = tmp_path_factory.mktemp("here")
    shutil.copytree(demo_photos, here / "photos")
    result = catdog("train", "--config", "sgd", "--set", "data.root=photos", *TINY_RUN, cwd=here)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (here / "runs").iterdir()
    assert run_dir.name.startswith("sgd-")
    text = (run_dir / "config.yaml").read_text()
    assert parse_yaml(text, "config.yaml")["data"]["root"] == str(here / "photos")
    assert f"# data.root as given: photos (in {here})" in text  # for the record
    return run_dir


def test_a_run_works_from_another_folder(relative_run: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    evaluated = catdog("evaluate", relative_run, "--json", cwd=elsewhere)
    assert evaluated.returncode == 0, evaluated.stderr
    again = catdog(
        "train", "--config", relative_run / "config.yaml", "--set", "train.epochs=1",
        "--set", f"output.dir={elsewhere / 'runs'}", cwd=elsewhere,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    (rerun,) = (elsewhere / "runs").iterdir()
    assert rerun.name.startswith("sgd-") and rerun.name != relative_run.name  # not config-...


def test_a_missing_data_root_from_a_run_says_where_it_came_from(
    relative_run: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copied-run"
    shutil.copytree(relative_run, copy)
    text = (copy / "config.yaml").read_text()
    saved_root = parse_yaml(text, "config.yaml")["data"]["root"]
    moved = tmp_path / "moved"
    shutil.move(saved_root, moved)  # the photos went elsewhere
    try:
        result = catdog("evaluate", copy, cwd=tmp_path)
        assert result.returncode == 2
        assert "no such folder" in result.stderr and "config saved in" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        shutil.move(moved, saved_root)


def test_train_without_photos_suggests_what_to_do(tmp_path: Path) -> None:
    result = catdog("train", "--set", "train.progress=false", cwd=tmp_path)
    assert result.returncode == 2
    assert "make-demo-data data/demo" in result.stderr and "--set data.root=" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_bad_set_value_is_blamed_on_set(tmp_path: Path) -> None:
    result = catdog("train", "--config", "sgd", "--set", "train.epochs=three", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --set train.epochs:"), result.stderr


# --- conventions --------------------------------------------------------------------------------


def test_version_short_help_and_flag_help() -> None:
    from catdog import __version__

    version = catdog("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"catdog {__version__}"
    assert catdog("-h").returncode == 0 and "train" in catdog("-h").stdout
    evaluate_help = catdog("evaluate", "-h").stdout
    assert "--json " in evaluate_help and "<bool>" not in evaluate_help
    assert "BOOLEAN" not in evaluate_help
    assert "-s, --set KEY=VALUE" in catdog("train", "-h").stdout


def test_every_option_of_every_command_has_help() -> None:
    import typer

    from catdog.cli import app

    def missing(command: object, path: str) -> list[str]:
        found = [
            f"{path} {param.opts[0]}"
            for param in command.params  # type: ignore[attr-defined]
            if param.param_type_name == "option" and not param.help
        ]
        for name, sub in getattr(command, "commands", {}).items():
            found += missing(sub, f"{path} {name}")
        return found

    assert missing(typer.main.get_command(app), "catdog") == []


def test_the_header_names_what_the_run_will_do(demo_photos: Path, tmp_path: Path) -> None:
    from catdog.builders import build_model

    result = catdog(
        "train", "--config", "momentum-ema", "--set", f"data.root={demo_photos}",
        "--set", "output.name=header", *TINY_RUN, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    head = result.stdout.split("epoch ")[0]
    config = load_config(
        resolve_config("momentum-ema"),
        [f"data.root={demo_photos}", "data.image_size=16", "model.hidden=[32]"],
    )
    network = build_model(config)
    count = sum(p.numel() for p in network.parameters())
    assert f"{count:,} parameters" in head
    assert "device     cpu" in head
    assert "96 train / 24 validation / 0 skipped" in head  # 120 photos, 20% held out
    assert "16×16 RGB: 768 features" in head
    assert "momentum lr=0.1 formulation=ema beta=0.9, batch 64, 2 epochs" in head
    assert head.startswith(f"training {Path('runs') / 'header'}\n")
    evaluated = catdog("evaluate", tmp_path / "runs" / "header", cwd=tmp_path)
    assert "best.pt" in evaluated.stdout and "epoch" in evaluated.stdout


# --- rounding and curves ----------------------------------------------------------------------


def test_numbers_are_rounded_to_what_they_mean(relative_run: Path) -> None:
    import json

    for line in (relative_run / "metrics.csv").read_text().splitlines()[1:]:
        _epoch, train_loss, val_loss, val_accuracy, *_ = line.split(",")
        assert len(val_accuracy.split(".")[-1]) <= 4
        for loss in (train_loss, val_loss):
            assert len(loss.replace(".", "").lstrip("0")) <= 6, loss
    result = json.loads(catdog("evaluate", relative_run, "--json").stdout)
    assert result["accuracy"] == round(result["accuracy"], 4)
    assert f"{result['loss']:.6g}" == repr(result["loss"]) or len(repr(result["loss"])) <= 9


def test_ewa_figures_have_y_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from catdog import figures

    drawn = []
    real_save = figures.save
    monkeypatch.setattr(figures, "save", lambda f, p: (drawn.append(f), real_save(f, p))[1])
    figures.draw_smoothing(tmp_path / "a.png")
    figures.draw_bias_correction(tmp_path / "b.png")
    assert all(figure.axes[0].get_ylabel() for figure in drawn) and len(drawn) == 2


# --- the Python API -----------------------------------------------------------------------------


def test_python_api_trains_evaluates_and_predicts_quietly(
    demo_photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import catdog as api

    summary = api.train(
        "sgd", data__root=str(demo_photos), data__image_size=16, data__workers=0,
        model__hidden=[32], train__epochs=2, output__dir=str(tmp_path / "runs"),
    )  # fmt: skip
    assert summary.epochs == 2 and (summary.run_dir / "best.pt").is_file()
    assert summary.run_dir.name.startswith("sgd-")
    assert capsys.readouterr().out == ""  # quiet: no header, no epoch lines
    result = api.evaluate(summary.run_dir)
    assert result["count"] == 24 and 0.0 <= result["accuracy"] <= 1.0
    # The same numbers the CLI prints with --json.
    import json

    cli = json.loads(catdog("evaluate", summary.run_dir, "--json").stdout)
    assert cli["accuracy"] == result["accuracy"] and cli["loss"] == result["loss"]
    photos = sorted(demo_photos.glob("*.jpg"))[:3]
    predictions = api.predict(summary.run_dir, photos)
    assert [p.path for p in predictions] == photos
    assert all(0.0 <= p.probability <= 1.0 for p in predictions)
    assert capsys.readouterr().out == ""
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        api.train("sgd", train__epochs=0)


def test_curves_in_percent_with_the_best_epoch_and_the_optimizer(
    relative_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catdog import plots, runs

    drawn = []
    real_save = plots.save
    monkeypatch.setattr(plots, "save", lambda f, p: (drawn.append(f), real_save(f, p))[1])
    runs.draw_curves(relative_run)
    (figure,) = drawn
    assert figure.get_suptitle() == f"{relative_run.name}: sgd, lr 0.1"
    accuracy = figure.axes[1]
    assert accuracy.get_ylabel() == "accuracy (%)"
    rows = runs.read_metrics(relative_run / "metrics.csv")
    assert list(accuracy.get_lines()[0].get_ydata()) == pytest.approx(
        [100 * row["val_accuracy"] for row in rows]
    )
    best = max(rows, key=lambda row: row["val_accuracy"])
    marks = [line for line in accuracy.get_lines() if line.get_linestyle() == ":"]
    assert marks and marks[0].get_xdata()[0] == best["epoch"]
    assert f"best: epoch {best['epoch']:.0f}" in marks[0].get_label()


# --- the README -------------------------------------------------------------------------------


def test_the_readme_table_of_keys_is_the_schemas() -> None:
    from catdog.schema_docs import readme_with_keys

    readme = (REPO / "README.md").read_text()
    assert readme_with_keys(readme) == readme, "the README's key table is stale: make config-docs"


def test_the_readme_python_example_runs_as_written(tmp_path: Path) -> None:
    import re

    from catdog.synthetic import make_demo_data

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### From Python") :]
    example = re.search(r"```python\n(.*?)```", section, re.S)
    assert example is not None
    make_demo_data(tmp_path / "data" / "demo", per_class=30, progress=False)
    result = subprocess.run(
        [sys.executable, "-c", example.group(1)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(str(Path("runs") / "demo-"))
    assert [line.split()[0] for line in lines[2:]] == ["data/demo/cat.1.jpg", "data/demo/dog.1.jpg"]
    assert all(line.split()[1] in ("cat", "dog") for line in lines[2:])
