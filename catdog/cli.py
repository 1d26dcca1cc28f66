"""The `catdog` command line: a thin layer over config, experiments, training and evaluation.

Every expected problem (bad config, bad data, bad checkpoint) is one line on stderr and exit
code 2; a diverged run exits 3; an interrupted run exits 128 + the signal's number.
"""

import functools
import json
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from catdog import cli_research, cli_tune
from catdog.cli_config import (
    CONFIG_HELP,
    complete_config,
    config_option,
    set_option,
)
from catdog.cli_config import register as register_config_commands
from catdog.completion import register as register_completion
from catdog.errors import EXIT_CODES, ConfigError, Interrupted
from catdog.paths import command, expand_path, expanded

app = typer.Typer(
    add_completion=False,  # our own `catdog completion SHELL`, which completes `--set` keys
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags read as flags, not `--json <bool>`
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Train and compare neural-network optimizers on Dogs vs. Cats.",
)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2, quiet: bool = False) -> typer.Exit:
    if not quiet:
        typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as None: JSON has no NaN (an empty split has no loss)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def told_by_rank_0(error: BaseException) -> bool:
    """Under torchrun, an error that every rank raised together is reported by rank 0 alone."""
    return bool(getattr(error, "on_every_rank", False)) and os.environ.get("RANK", "0") != "0"


def reports_errors(command: F) -> F:
    """Turn the errors a user can fix into one line and an exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # numpy before torch: torch's own import of numpy swallows a Ctrl-C that lands in it
        # (the command then runs on, or fails with numpy half imported); ours raises it.
        import numpy  # noqa: F401

        try:
            return command(*args, **kwargs)
        except Interrupted as error:
            if not told_by_rank_0(error):
                typer.echo(str(error), err=True)
            raise typer.Exit(error.exit_code) from None
        except tuple(EXIT_CODES) as error:
            code = next(code for kind, code in EXIT_CODES.items() if isinstance(error, kind))
            raise fail(str(error), code=code, quiet=told_by_rank_0(error)) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        from catdog import __version__

        typer.echo(f"catdog {__version__}")
        raise typer.Exit()


@app.callback()
def _catdog(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Train and compare neural-network optimizers on Dogs vs. Cats."""


@app.command()
@reports_errors
def train(
    config: str = config_option(),
    set_: list[str] = set_option(),
    resume: Path = typer.Option(
        None, "--resume", metavar="RUN", help="Continue the run in this folder from its last.pt."
    ),
    nproc: int = typer.Option(
        None,
        "--nproc",
        min=1,
        help="Train in N processes on this machine (DistributedDataParallel, one per GPU), "
        "as torchrun --standalone --nproc_per_node N would.",
    ),
) -> None:
    """Train a network; the run's config, metrics and checkpoints go to a new run folder."""
    from catdog import api, distributed

    resume = expanded(resume)
    if resume is not None and config is not None:
        raise ConfigError("--resume takes the config saved in the run; leave out --config")
    # The config parsed once and last.pt read once, here; the loop takes both as they are.
    # progress=None: the config's progress bar; quiet=False: the epoch lines shown.
    training = api.prepare_training(config, resume=resume, sets=set_, progress=None)
    cfg = training.config
    if nproc is not None:
        if training.checkpoint is not None:
            resume = Path(training.checkpoint["path"]).parent  # RUN/last.pt names its run too
        # Refuse here, once, what every worker would refuse; then run this command in each.
        os.environ.setdefault("CATDOG_COMMAND", command())  # the workers' hints: this command
        distributed.check_distributed(cfg, nproc, distributed.rank_device(cfg.device, nproc - 1))
        options = [("--config", config), *(("--set", s) for s in set_), ("--resume", resume)]
        args = [str(part) for key, value in options if value is not None for part in (key, value)]
        raise typer.Exit(distributed.launch(nproc, ["train", *args]))
    with distributed.process_group(cfg.device):
        summary = api.run_training(training, quiet=False)
        if not distributed.is_main():
            return
    held_out = not math.isnan(summary.best_accuracy)
    best = (
        f"{summary.best_accuracy:.2%} at epoch {summary.best_epoch}"
        if summary.best_epoch and held_out
        else "n/a"
        if held_out
        else "none (data.val_fraction 0: trained on every photo)"
    )
    evaluation = f"{command()} evaluate {summary.run_dir}" + ("" if held_out else " --data DIR")
    typer.echo(
        f"run: {summary.run_dir}  epochs: {summary.epochs}  best val_acc: {best}  "
        f"time: {summary.seconds:.1f}s\nevaluate with: {evaluation}"
    )


@app.command()
@reports_errors
def evaluate(
    target: Path = typer.Argument(..., metavar="RUN", help="Run folder or checkpoint file."),
    data: Path = typer.Option(
        None,
        "--data",
        metavar="DIR",
        help="Photo folder to evaluate on; default: the run's validation split.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object."),
    tta: bool = typer.Option(
        None,
        "--tta/--no-tta",
        help="Average each photo with its mirror; --no-tta: no test-time views unless "
        "--tta-shift (default: the run's eval.tta).",
    ),
    tta_shift: int = typer.Option(
        None,
        "--tta-shift",
        min=0,
        metavar="N",
        help="Also average over shifts of up to N px (default: the run's eval.tta_shift).",
    ),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N (default: auto)."),
    report_dir: Path = typer.Option(
        None,
        "--report",
        metavar="DIR",
        help="Write pictures of the worst mistakes, ROC, calibration and predictions.csv to DIR.",
    ),
    force: bool = typer.Option(False, "--force", help="Let --report replace files in DIR."),
) -> None:
    """Accuracy, loss, AUC, log-loss, calibration and confusion matrix of a trained run."""
    from catdog import api

    report = api.evaluate(
        target,
        data,
        tta=tta,
        tta_shift=tta_shift,
        device=device,
        progress=not as_json,
        report=report_dir,
        force=force,
    )
    if as_json:
        typer.echo(json.dumps(json_safe(report), allow_nan=False))
        return
    (tn, fp), (fn, tp) = report["confusion"]
    typer.echo(
        f"checkpoint: {report['checkpoint']} (epoch {report['epoch']})\n"
        f"data: {report['data']}\n"
        f"test-time views: {report['views']} per photo\n"
        f"count: {report['count']}  accuracy: {report['accuracy']:.2%}  "
        f"loss: {report['loss']:.4f}\n"
        f"auc: {'n/a (one class)' if report['auc'] is None else format(report['auc'], '.4f')}  "
        f"log_loss: {report['log_loss']:.4f}  ece: {report['ece']:.4f}\n"
        f"confusion (rows: true, columns: predicted)\n"
        f"          cat    dog\n  cat {tn:>6} {fp:>6}\n  dog {fn:>6} {tp:>6}"
    )
    if report_dir is not None:
        typer.echo(
            f"report: {report['report']} (top_losses.png, confident_mistakes.png, "
            "roc.png, calibration.png, predictions.csv)"
        )


@app.command()
@reports_errors
def predict(
    target: Path = typer.Argument(..., metavar="RUN", help="Run folder or checkpoint file."),
    paths: list[Path] = typer.Argument(
        ..., metavar="PATH", help="Photos, and folders searched recursively."
    ),
    out: Path = typer.Option(
        None, "--out", "-o", metavar="FILE", help="Write the answers to FILE: .csv or .json."
    ),
    format_: str = typer.Option(
        None,
        "--format",
        metavar="table|csv|json",
        help="Default: --out's extension, else a table.",
    ),
    kaggle: Path = typer.Option(
        None, "--kaggle", metavar="FILE", help="Write Kaggle's id,label submission to FILE."
    ),
    clip: float = typer.Option(
        0.005, "--clip", metavar="EPS", help="--kaggle: P(dog) clipped to [EPS, 1 - EPS]."
    ),
    force: bool = typer.Option(False, "--force", help="Replace --out or --kaggle if it exists."),
    tta: bool = typer.Option(
        None,
        "--tta/--no-tta",
        help="Average each photo with its mirror; --no-tta: no test-time views unless "
        "--tta-shift (default: the run's eval.tta).",
    ),
    tta_shift: int = typer.Option(
        None,
        "--tta-shift",
        min=0,
        metavar="N",
        help="Also average over shifts of up to N px (default: the run's eval.tta_shift).",
    ),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N (default: auto)."),
) -> None:
    """P(dog), label and confidence of each photo, as a table, CSV or JSON; or a Kaggle file."""
    from catdog.evaluate import restore
    from catdog.kaggle import check_epsilon, photo_ids, submission
    from catdog.outputs import check_new_file, write_text
    from catdog.predict import collect_photos, output_format, render, unreadable_warning
    from catdog.predict import predict as predict_photos

    out, kaggle = expanded(out), expanded(kaggle)
    format_ = output_format(out, format_)
    if out is not None:
        check_new_file(out, "--out", force)
    if kaggle is not None:
        check_new_file(kaggle, "--kaggle", force)
        check_epsilon(clip)
        if out is not None and out.resolve() == kaggle.resolve():
            raise ConfigError(f"--out and --kaggle both name {out}; give two files")
    trained = restore(Path(expand_path(target)), device)
    photos = collect_photos([expand_path(path) for path in paths])
    if kaggle is not None:
        photo_ids(photos)  # a name without a number is refused before decoding
    progress = sys.stderr.isatty()
    predictions = predict_photos(
        target, photos, tta, device, progress, trained=trained, tta_shift=tta_shift
    )
    if warning := unreadable_warning(predictions):
        typer.echo(warning, err=True)
    if kaggle is not None:
        write_text(kaggle, submission(predictions, clip))
        typer.echo(
            f"wrote {kaggle}: {len(predictions)} rows of id,label, "
            f"P(dog) clipped to [{clip:g}, {1 - clip:g}]"
        )
    text = render(predictions, format_)
    if out is not None:
        write_text(out, text)
        typer.echo(f"wrote {out}: {len(predictions)} predictions as {format_}")
    elif kaggle is None:
        typer.echo(text, nl=False)


@app.command()
@reports_errors
def export(
    target: Path = typer.Argument(
        ..., metavar="RUN", help="Run folder (its best.pt) or checkpoint file."
    ),
    format_: str = typer.Option(
        ..., "--format", metavar="onnx|torchscript", help="onnx or torchscript."
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        metavar="FILE",
        help="Default: beside the checkpoint, best.onnx or best.torchscript.pt.",
    ),
    tta: bool = typer.Option(
        None,
        "--tta/--no-tta",
        help="Fold the mirror average in; --no-tta: no test-time views unless --tta-shift "
        "(default: the run's eval.tta).",
    ),
    tta_shift: int = typer.Option(
        None,
        "--tta-shift",
        min=0,
        metavar="N",
        help="Fold in the average over shifts of up to N px (default: eval.tta_shift).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
) -> None:
    """The network for use without catdog: uint8 photos (N, C, S, S) in, P(dog) out."""
    from catdog.export import export as export_run

    exported = export_run(Path(expand_path(target)), format_, expanded(out), force, tta, tta_shift)
    typer.echo(exported.describe())


@app.command("make-demo-data")
@reports_errors
def make_demo_data(
    out_dir: Path = typer.Argument(
        ..., metavar="DIR", help="Folder to write the demo photos into."
    ),
    per_class: int = typer.Option(1000, "--per-class", min=1, help="Photos of each class."),
    seed: int = typer.Option(0, "--seed", help="Seed of the drawing: same seed, same photos."),
) -> None:
    """Draw the built-in demo photos (cat-like and dog-like animals) in Kaggle's flat layout."""
    from catdog.synthetic import make_demo_data as make

    out_dir = Path(expand_path(out_dir))
    paths = make(out_dir, per_class=per_class, seed=seed)
    typer.echo(f"wrote {len(paths)} demo photos to {out_dir}")


@app.command()
@reports_errors
def demo(
    config: str = typer.Option(
        "demo", "--config", "-c", metavar="FILE", help=CONFIG_HELP, autocompletion=complete_config
    ),
    data: Path = typer.Option(
        Path("data/demo"),
        "--data",
        metavar="DIR",
        help="Where the demo photos are (drawn if missing).",
    ),
    set_: list[str] = set_option("Override a key of the demo's config: --set train.epochs=3."),
    per_class: int = typer.Option(
        1000, "--per-class", min=1, help="Photos of each class to draw, if drawn."
    ),
) -> None:
    """Make the demo photos if missing, train on them, evaluate: the product in one command.

    Works from any folder: the demo's config ships with catdog; photos and runs go here.
    """
    from catdog import api
    from catdog.synthetic import make_demo_data as make

    data = Path(expand_path(data))
    # Everything that can fail is checked before the photos take seconds to draw.
    cfg, label = api.load(config, [*set_, f"data.root={data}"])
    api.check_can_run(cfg)
    if not any(data.glob("*.jpg")):
        typer.echo(f"making demo photos in {data} ...")
        make(data, per_class=per_class)
    summary = api.train(cfg, label=label, progress=None, quiet=False)
    report = api.evaluate(summary.run_dir)
    me = command()
    typer.echo(
        f"\ndemo run: {summary.run_dir}\n"
        f"validation accuracy {report['accuracy']:.2%} on {report['count']} photos "
        f"(best epoch {summary.best_epoch}), training time {summary.seconds:.1f}s\n"
        f"next: {me} evaluate {summary.run_dir}   |   {me} predict {summary.run_dir} PHOTO.jpg"
    )


cli_research.register(app, reports_errors)
cli_tune.register(app, reports_errors)


register_config_commands(app, reports_errors)


def main() -> None:
    register_completion()
    # Before the training loop takes SIGTERM over, it ends the process as Ctrl-C does: through
    # the cleanups (no empty run folder left, no decode workers, the locks released).
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        app(prog_name="catdog")
    except KeyboardInterrupt:  # Ctrl-C while a command imports torch, say: no traceback
        sys.exit(130)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
