"""The commands that choose hyperparameters: `tune` (an Optuna search) and `lr-find` (Smith's
range test). `register` adds them to the `catdog` app, each wrapped in its error handling."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

SPACE_HELP = (
    "A key to search: optimizer.lr=log:1e-5:1 (log scale), optimizer.beta=0.8:0.99 (uniform), "
    "model.hidden=[256],[512,128] (choices). Repeatable."
)
SEEDS_HELP = "Repeat every run under each seed: --seeds 0,1,2, or --seeds 5 for 0-4."
COMPARE_TUNE_HELP = (
    "Tune each run first with the same budget (--trials), then run --seeds on each best "
    "config: --tune optimizer.lr=log:1e-5:1 (repeatable, as tune's --space)."
)
STORAGE_HELP = (
    "Where the study lives, for several processes or machines: a database URL "
    "(sqlite:///tune.db, postgresql://...) or a journal file on a shared folder. "
    "Default: study.journal in the tune's folder."
)


def tune(
    config: Path = typer.Argument(None, help="YAML config to start from (not with --resume)."),
    space: list[str] = typer.Option([], "--space", help=SPACE_HELP),
    trials: int = typer.Option(20, "--trials", help="Trials in the study, all processes together."),
    objective: str = typer.Option(
        "val_loss", "--objective", help="val_loss (lowest) or val_accuracy (highest), per trial."
    ),
    holdout: float = typer.Option(
        0.0,
        "--holdout",
        help="Share of the validation split no trial sees; the best trial is measured on it.",
    ),
    storage: str = typer.Option(None, "--storage", help=STORAGE_HELP),
    study_name: str = typer.Option(None, "--study-name", help="Default: the config's name."),
    jobs: int = typer.Option(1, "--jobs", help="Processes on this machine, sharing the study."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a key of the config."),
    out_dir: Path = typer.Option(Path("tunes"), "--out-dir", help="Parent folder."),
    name: str = typer.Option(None, "--name", help="Folder name (default: the config's)."),
    resume: Path = typer.Option(None, "--resume", help="Continue the tune in this folder."),
    worker: str = typer.Option(None, "--worker", hidden=True, help="K/N: one of --jobs."),
) -> None:
    """Search hyperparameters with Optuna (TPE, median pruning); write trials.csv, tune.png
    and best.yaml, which `catdog train --config` takes.

    The objective is measured on the validation split, so the best trial's figure there is
    optimistic (it was chosen for it); --holdout keeps photos out of every trial to measure it.
    """
    from catdog.config_yaml import read_config_file
    from catdog.errors import ConfigError
    from catdog.tune import TuneRequest, load_request, run_trials, start
    from catdog.tune import tune as run_tune

    if resume is not None:
        if config is not None or space:
            raise ConfigError("--resume takes the tune's saved request; leave out CONFIG/--space")
        load_request(resume)
        if worker is not None:
            k, _, n = worker.partition("/")
            run_trials(resume, int(k), int(n or 1))
            return
        folder = resume
    else:
        if config is None:
            raise ConfigError("tune: give a config file (or --resume FOLDER)")
        from catdog.config import apply_override

        base = read_config_file(config)
        for assignment in set_:
            apply_override(base, assignment)
        request = TuneRequest(
            base, list(space), trials, objective, holdout, storage,
            study_name or config.stem, jobs,
        )  # fmt: skip
        folder = start(request, out_dir, name or config.stem)
        typer.echo(f"tune: {folder}")
    result = run_tune(folder)
    _report(result)


def _report(result: Any) -> None:
    states: dict[str, int] = {}
    for record in result.records:
        states[record.state] = states.get(record.state, 0) + 1
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))
    typer.echo(f"\n{len(result.records)} trials ({counts}) in {result.folder}")
    if result.best is None:
        typer.echo("no trial finished; nothing to recommend")
        return
    values = ", ".join(f"{k}={v}" for k, v in result.best.params.items())
    typer.echo(
        f"best: trial {result.best.number + 1} ({Path(result.best.run_dir).name}), "
        f"value {result.best.value:.4f}: {values}"
    )
    if result.holdout:
        h = result.holdout
        typer.echo(
            f"best trial on the {h['count']} holdout photos: accuracy {h['accuracy']:.2%}, "
            f"loss {h['loss']:.4f}"
        )
    typer.echo(f"train it with: catdog train --config {result.folder / 'best.yaml'}")


def lr_find(
    config: Path = typer.Option(..., "--config", "-c", help="YAML config: network and optimizer."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a key of the config."),
    lr_min: float = typer.Option(1e-7, "--lr-min", help="The first step's lr."),
    lr_max: float = typer.Option(10.0, "--lr-max", help="The last step's lr, if reached."),
    steps: int = typer.Option(100, "--steps", help="Mini-batches (one step each)."),
    plot: Path = typer.Option(Path("lr_find.png"), "--plot", help="Where to draw the curve."),
    save: Path = typer.Option(
        None, "--save", help="Also keep a folder: config.yaml, lr_find.csv, lr_find.png."
    ),
) -> None:
    """Smith's range test: the lr grows exponentially over mini-batches; suggest an lr."""
    from catdog.config import load_config
    from catdog.lr_find import RULE, find_lr

    cfg = load_config(config, set_)
    found = find_lr(cfg, plot, lr_min, lr_max, steps, save)
    result = found.result
    start, end = result.valley
    typer.echo(
        f"suggested lr {result.suggestion:.3g} ({RULE}: {result.lrs[start]:.2g} to "
        f"{result.lrs[end]:.2g}); {len(result.lrs)} steps"
        + (", stopped when the loss blew up" if result.stopped_early else "")
    )
    typer.echo(f"curve: {found.plot}\nuse it: --set optimizer.lr={result.suggestion:.3g}")


def tune_settings(
    space: list[str], trials: int, objective: str, holdout: float = 0.0
) -> dict[str, Any] | None:
    """compare's --tune options as the comparison's plan keeps them; None without --tune."""
    from catdog.errors import ConfigError
    from catdog.tune import OBJECTIVES

    if not space:
        if holdout:
            raise ConfigError("--holdout goes with --tune: it keeps photos out of the trials")
        return None
    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective {objective}: choose one of {', '.join(OBJECTIVES)}")
    return {"space": list(space), "trials": trials, "objective": objective, "holdout": holdout}


def register(app: typer.Typer, reports_errors: Callable[[Any], Any]) -> None:
    app.command("tune")(reports_errors(tune))
    app.command("lr-find")(reports_errors(lr_find))
