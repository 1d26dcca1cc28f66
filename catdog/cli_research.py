"""The commands that study optimizers: `compare` (runs side by side, with seeds and tuning),
`landscape`, `gradcheck` and `figures`. `register` adds them to the `catdog` app, each wrapped
in its error handling."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from catdog import cli_tune
from catdog.cli_config import complete_config, set_option
from catdog.errors import ConfigError
from catdog.paths import expand_path, run_label
from catdog.shipped import resolve_config


def compare(
    configs: list[str] = typer.Argument(
        None,
        metavar="CONFIG...",
        help="YAML configs or shipped names; each becomes a run (crossed with --grid).",
        autocompletion=complete_config,
    ),
    set_: list[str] = set_option("Override a key in every run: --set train.epochs=5."),
    grid: list[str] = typer.Option(
        [], "--grid", "-g", help="One run per value: --grid optimizer.name=sgd,momentum."
    ),
    name: str = typer.Option(
        None, "--name", help="Folder name (default: the first config's), the time is added."
    ),
    target_loss: float = typer.Option(
        None, "--target-loss", help="Validation loss to race to (default: the worst run's best)."
    ),
    out_dir: Path = typer.Option(
        Path("comparisons"), "--out-dir", metavar="DIR", help="Parent folder."
    ),
    seeds: str = typer.Option(None, "--seeds", help=cli_tune.SEEDS_HELP),
    jobs: int = typer.Option(1, "--jobs", help="Train the runs in N processes on this machine."),
    log_y: bool = typer.Option(False, "--log-y", help="Loss axes on a log scale."),
    tune: list[str] = typer.Option([], "--tune", help=cli_tune.COMPARE_TUNE_HELP),
    trials: int = typer.Option(
        16, "--trials", help="With --tune: trials per run, the same budget."
    ),
    objective: str = typer.Option(
        "val_loss", "--objective", help="With --tune: val_loss|val_accuracy."
    ),
    holdout: float = typer.Option(
        0.0,
        "--holdout",
        help="With --tune: share of the validation split no trial sees; each run's best trial "
        "is measured on it (holdout.csv).",
    ),
    resume: Path = typer.Option(None, "--resume", help="Continue the comparison in this folder."),
) -> None:
    """Train runs from one seed on the same data, then plot and tabulate them together.

    Several --grid options form a product; the first config's seed is every run's seed.
    --seeds repeats every run under each seed and reports means, 95% intervals and which
    differences are significant (paired by seed). Ctrl-C writes the summary of what finished;
    --resume DIR continues it.
    """
    from catdog.compare import compare as compare_runs
    from catdog.compare import plan
    from catdog.compare import resume as resume_comparison
    from catdog.scoreboard import markdown
    from catdog.sweep import parse_seeds

    runs = []  # on --resume the plan is the comparison's own
    if resume is not None:
        if configs:
            raise ConfigError("--resume takes the comparison's saved plan; leave out the configs")
        comparison = resume_comparison(Path(expand_path(resume)))
    else:
        if not configs:
            raise ConfigError("compare: give at least one config file (or --resume DIR)")
        paths = [resolve_config(config) for config in configs]
        runs = plan(paths, set_, grid)
        out_dir = Path(expand_path(out_dir))
        comparison = compare_runs(
            runs, out_dir, name or run_label(configs[0]), target_loss, parse_seeds(seeds), jobs,
            log_y, cli_tune.tune_settings(tune, trials, objective, holdout),
        )  # fmt: skip
    typer.echo(f"\n{markdown(comparison.scoreboard)}")
    typer.echo(f"comparison: {comparison.folder} (comparison.png, summary.md, summary.csv)")
    if any(planned.config.output.tensorboard for planned in runs):
        typer.echo(f"side by side in TensorBoard: tensorboard --logdir {comparison.folder}")


def gradcheck(
    config: Path = typer.Option(
        None, "--config", "-c", help="Take the loss and hidden widths (capped) from this config."
    ),
    tolerance: float = typer.Option(1e-6, "--tolerance", help="Largest relative error passing."),
    seed: int = typer.Option(0, "--seed", help="Seed of the small network and its photos."),
) -> None:
    """Backprop against finite differences on a small float64 copy of the config's network, layer
    by layer; exit 1 over tolerance."""
    from catdog.gradcheck import report

    lines, passed = report(config, tolerance, seed)
    typer.echo("\n".join(lines))
    if not passed:
        raise typer.Exit(1)


def figures(
    out_dir: Path = typer.Argument(..., help="Folder for the PNGs (made if missing)."),
) -> None:
    """Draw the article's figures: EWA smoothing, bias correction, weights, a ravine race."""
    from catdog.figures import make_figures

    for path, lines in make_figures(out_dir).items():
        typer.echo(str(path))
        for line in lines:
            typer.echo(f"  {line}")


def landscape(
    target: Path = typer.Argument(
        ..., help="A run folder, or a comparison folder of runs, trained with train.trajectory."
    ),
    out: Path = typer.Option(
        None, "--out", help="Folder for landscape.png and .txt (default: TARGET/landscape)."
    ),
    photos: int = typer.Option(
        256, "--photos", min=1, help="Training photos the loss and the curvature are measured on."
    ),
    grid: int = typer.Option(15, "--grid", min=3, help="Loss grid points along each axis."),
    lanczos: int = typer.Option(
        20, "--lanczos", min=1, help="Hessian-vector products per Lanczos run (2 runs a point)."
    ),
    device: str = typer.Option(
        None, "--device", help="auto, cpu, cuda or cuda:N (default: the run's)."
    ),
) -> None:
    """The runs' loss landscape: paths in their PCA plane, the line θ₀→θ₁, Hessian curvature.

    All runs must share one network (one catdog compare); the losses are taken on fixed photos,
    batch norm with the statistics of that fixed batch.
    """
    from catdog.landscape_report import write_landscape

    write_landscape(
        target, out, typer.echo, photos=photos, resolution=grid, lanczos_steps=lanczos,
        device=device,
    )  # fmt: skip


def register(app: typer.Typer, reports_errors: Callable[[Any], Any]) -> None:
    for command in (compare, landscape, gradcheck, figures):
        app.command()(reports_errors(command))
