"""Comparisons: several runs from one seed, side by side in one folder.

`plan` turns config files, `--set` overrides and `--grid` options into runs: every config file
is crossed with every combination of grid values, and every run takes the first config's seed
(unless the grid itself varies `seed`), so runs of one architecture start from the same weights
and all see the same data split. A run
is labelled by what sets it apart: the keys whose values differ between the runs' resolved
configs, e.g. "optimizer.name=momentum, optimizer.formulation=ema".

`compare` trains the runs into `<parent>/<name>-<time>/<NN>-<label>/`, decoding the photos once
per distinct data section, and writes `comparison.png`, `summary.md` and `summary.csv` (see
`catdog.scoreboard`). A run that diverges or gets stuck is recorded as such and the others still
run. `--seeds`, `--jobs`, `--tune`, Ctrl-C and `--resume` are `catdog.sweep`'s.
"""

import copy
import itertools
import json
import math
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catdog.builders import PreparedData, prepare_data
from catdog.config import (
    Config,
    apply_override,
    config_dict,
    load_config,
    validate,
)
from catdog.config_yaml import parse_yaml, read_config_file
from catdog.errors import ConfigError, Interrupted
from catdog.runs import fresh_folder
from catdog.scoreboard import Scoreboard

IGNORED_SECTIONS = ("output",)
"""Set by the comparison itself (each run's folder), so never what tells runs apart."""


@dataclass
class PlannedRun:
    config: Config
    label: str
    """The differing keys and this run's values, or the config file's name if none differ."""
    folder: str
    """The run's folder name inside the comparison folder."""


def parse_grid(options: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """`KEY=V1,V2,...` options → (key, values); the values are read as one YAML flow list.

    So `model.hidden=[64],[128,32]` gives two lists, and `optimizer.lr=0.1,1e-2` two floats.
    """
    grid: list[tuple[str, list[Any]]] = []
    for option in options:
        key, sep, raw = option.partition("=")
        key = key.strip()
        example = "e.g. --grid optimizer.name=sgd,momentum"
        if not sep or not key or not raw.strip():
            raise ConfigError(f"--grid {option!r}: expected KEY=V1,V2,..., {example}")
        if key in (k for k, _ in grid):
            raise ConfigError(f"--grid {key}: given twice; list all its values in one --grid")
        values = parse_yaml(f"[{raw}]", f"--grid {key}")
        grid.append((key, values))
    return grid


def plan(
    config_paths: Sequence[Path], overrides: Sequence[str] = (), grid: Sequence[str] = ()
) -> list[PlannedRun]:
    """The runs of a comparison, in order: config files outer, grid combinations inner."""
    if not config_paths:
        raise ConfigError("compare: give at least one config file")
    axes = parse_grid(grid)
    seed = load_config(config_paths[0], overrides).seed
    configs: list[Config] = []
    sources: list[str] = []
    for path in config_paths:
        base = read_config_file(path)  # once per file, however many grid combinations
        for values in itertools.product(*(values for _, values in axes)):
            data = copy.deepcopy(base)
            for assignment in overrides:
                apply_override(data, assignment)
            data["seed"] = seed
            # JSON is YAML, so each value goes through the same parser as --set.
            chosen = list(zip((key for key, _ in axes), values, strict=True))
            for key, value in chosen:
                apply_override(data, f"{key}={json.dumps(value)}")
            described = ", ".join(f"{key}={_show(value)}" for key, value in chosen)
            where = f"{path} with --grid {described}" if chosen else str(path)
            configs.append(validate(data, source=where))
            sources.append(path.stem)
    flat = [flatten(config_dict(config)) for config in configs]
    keys = differing_keys(flat)
    runs: list[PlannedRun] = []
    for index, (config, values, stem) in enumerate(
        zip(configs, flat, sources, strict=True), start=1
    ):
        shown = {key: values[key] for key in keys if key in values}
        label = ", ".join(f"{key}={_show(value)}" for key, value in shown.items()) or stem
        if label in (earlier.label for earlier in runs):
            label = f"{label} (run {index})"  # identical configs: keep the legend unambiguous
        name = "-".join(_show(value) for value in shown.values()) or stem
        runs.append(PlannedRun(config, label, f"{index:02d}-{_slug(name)}"))
    return runs


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections → dotted keys: {"optimizer": {"lr": 0.1}} → {"optimizer.lr": 0.1}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differing_keys(flat_configs: Sequence[dict[str, Any]]) -> list[str]:
    """Keys whose value is not the same in every config (missing counts as a value), in order."""
    keys: dict[str, None] = {}
    for flat in flat_configs:
        keys.update(dict.fromkeys(flat))
    # JSON text tells 1 from 1.0 and true; None stands for a missing key.
    return [
        key
        for key in keys
        if key.split(".")[0] not in IGNORED_SECTIONS
        and len({json.dumps(flat[key]) if key in flat else None for flat in flat_configs}) > 1
    ]


@dataclass
class Comparison:
    folder: Path
    scoreboard: Scoreboard


def compare(
    runs: Sequence[PlannedRun],
    parent: Path = Path("comparisons"),
    name: str = "comparison",
    target_loss: float | None = None,
    seeds: list[int] | None = None,
    jobs: int = 1,
    log_y: bool = False,
    tune: dict[str, Any] | None = None,
) -> Comparison:
    """Train every planned run (under each of `seeds`) into one new folder, then draw and
    tabulate them together; with `tune` ({space, trials, objective}) tune each run first.

    The plan is written first (see `catdog.sweep`), so Ctrl-C is resumable by `resume`.
    """
    from catdog import sweep

    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: give at least 1 process")
    for planned in runs:
        if planned.config.data.val_fraction == 0:
            raise ConfigError(
                f"{planned.label}: data.val_fraction 0 trains on every photo, and compare "
                "ranks runs on their validation split; hold some out: --set data.val_fraction=0.2"
            )
    if target_loss is not None and not (math.isfinite(target_loss) and target_loss > 0):
        raise ConfigError(f"--target-loss {target_loss}: give a positive, finite loss")
    if tune is not None:
        from catdog.search_space import parse_space

        if tune["trials"] < 1:
            raise ConfigError(f"--trials {tune['trials']}: give at least 1 trial")
        if not 0.0 <= tune.get("holdout", 0.0) < 1.0:
            raise ConfigError(
                f"--holdout {tune['holdout']}: a share of the validation split in [0, 1)"
            )
        for planned in runs:
            parse_space(tune["space"], config_dict(planned.config))
    folder = fresh_folder(parent, name, "--out-dir")
    settings: dict[str, Any] = {
        "target_loss": target_loss, "seeds": seeds, "jobs": jobs, "log_y": log_y, "tune": tune,
        "planned": [
            {"label": r.label, "folder": r.folder, "config": config_dict(r.config)} for r in runs
        ],
    }  # fmt: skip
    sweep.save_plan(folder, [] if tune else sweep.jobs_for(runs, folder, seeds), settings)
    return resume(folder)


def resume(folder: Path) -> Comparison:
    """Carry out (or continue) the comparison planned in `folder`; Ctrl-C writes the summary of
    what finished and raises `Interrupted` naming `catdog compare --resume`."""
    from catdog import sweep

    jobs, settings = sweep.load_plan(folder)
    try:
        if not jobs and settings.get("tune"):
            planned = sweep.tune_each(folder, settings)
            jobs = sweep.jobs_for(planned, folder, settings["seeds"])
            sweep.save_plan(folder, jobs, settings)
        sweep.run_all(folder, jobs, settings["jobs"])
    except (Interrupted, KeyboardInterrupt) as error:
        code = error.exit_code if isinstance(error, Interrupted) else 128 + signal.SIGINT
        finished = len(sweep.outcomes(folder))
        if jobs:
            sweep.summarize(folder, jobs, settings["target_loss"], settings["log_y"])
        raise Interrupted(
            f"{signal.Signals(code - 128).name}: comparison stopped after {finished} of "
            f"{len(jobs) or 'the'} runs; their summary is in {folder / 'summary.md'}; "
            f"resume with: catdog compare --resume {folder}",
            code,
        ) from None
    board = sweep.summarize(folder, jobs, settings["target_loss"], settings["log_y"])
    return Comparison(folder, board)


def shared_data(config: Config, prepared: dict[str, PreparedData]) -> PreparedData:
    """The photos `config` trains on, decoded and split once per distinct data section and seed.

    `prepared` holds what earlier runs decoded; augmentation acts on batches, so it is no part
    of the key.
    """
    section = config.data.model_dump(mode="json", exclude={"augment"})
    key = json.dumps([section, config.seed], sort_keys=True)
    if key not in prepared:
        prepared[key] = prepare_data(config, progress=config.train.progress)
    return prepared[key]


def _show(value: Any) -> str:
    """A value as one would type it after --set: strings bare, the rest as JSON (true, [64, 32])."""
    return value if isinstance(value, str) else json.dumps(value)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text).strip("_")[:60] or "run"
