"""The run folder: where a run's files live, and the one place that names them.

<output.dir>/<output.name or label-time>/
    config.yaml   the resolved config (every key), readable by `catdog train --config`
    metrics.csv   one row per epoch (METRICS_FIELDS)
    last.pt       the latest checkpoint: resume from it
    best.pt       the checkpoint of the best validation accuracy so far
    curves.png    loss and accuracy per epoch, drawn at the end
"""

import csv
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from catdog.cache_lock import Held, holding_now
from catdog.checkpoint import load_checkpoint, temporaries_of
from catdog.config import (
    Config,
    apply_override,
    check_folder_name,
    save_config,
    validate,
)
from catdog.config_yaml import read_config_file
from catdog.errors import ConfigError
from catdog.paths import command, typed_paths_comment
from catdog.rounding import rounded_row

CONFIG = "config.yaml"
METRICS = "metrics.csv"
LAST = "last.pt"
BEST = "best.pt"
CURVES = "curves.png"
LOCK = ".training"  # held (and present) while a process trains the run

METRICS_FIELDS = ["epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds", "elapsed"]

RESUMABLE_KEYS = ("train.epochs", "train.progress", "device")
"""The only keys `--set` may change on `--resume`: the rest would make another run."""


# --- making one ---------------------------------------------------------------------------------


def new_run_dir(config: Config, label: str) -> Path:
    """`output.dir/output.name`, or `output.dir/<label>-<time>`; an existing folder is an error."""
    parent = Path(config.output.dir)
    _make_parent(parent, "output.dir")
    if config.output.name:
        run_dir = parent / config.output.name
        try:
            with _folder_errors(parent, "output.dir"):
                run_dir.mkdir()
        except FileExistsError:
            if not stopped_before_its_first_checkpoint(run_dir):
                raise ConfigError(
                    f"output.name: run folder {run_dir} already exists; choose another name, "
                    f"or continue it with: {command()} train --resume {run_dir}"
                ) from None
            # Killed (kill -9, the OOM killer) before it saved anything: nothing to resume and
            # nothing of value, so the same command starts it again instead of being refused.
            for leftover in run_dir.iterdir():
                leftover.unlink()
            print(
                f"note: {run_dir} held only what a run stopped before its first checkpoint "
                "leaves; training into it afresh",
                file=sys.stderr,
            )
        return run_dir
    return fresh_folder(parent, label, "output.dir")


# What a run writes before its first checkpoint: the config, the lock, and the observers' files
# (steps.csv, the trajectory, TensorBoard events; tests check these names against their modules).
BEFORE_FIRST_CHECKPOINT = (
    CONFIG, LOCK, "steps.csv", "trajectory-start.pt", "trajectory.f16", "trajectory.steps",
    "events.out.tfevents.*",
)  # fmt: skip


# A kill while the first last.pt is written leaves its temporary file.
CHECKPOINT_TEMPORARIES = (temporaries_of(LAST), temporaries_of(BEST))


def _only_epoch_1s_row(others: list[Path]) -> bool:
    """Whether `others` (the entries beyond the known names) is only a metrics.csv of one row:
    epoch 1's row is written just before the first checkpoint, so a kill between the two
    leaves it, worth nothing without the weights. More rows than one mean checkpoints were
    saved: kept."""
    if [e.name for e in others] != [METRICS] or not others[0].is_file():
        return False
    try:
        return len(others[0].read_text().splitlines()) <= 2  # the header and epoch 1's row
    except (OSError, UnicodeDecodeError):
        return False


def stopped_before_its_first_checkpoint(run_dir: Path) -> bool:
    """Whether `run_dir` holds only files of a run that ended before its first checkpoint (or
    nothing), and no process is training it now."""
    try:
        entries = list(run_dir.iterdir())
    except OSError:
        return False
    names = (*BEFORE_FIRST_CHECKPOINT, *CHECKPOINT_TEMPORARIES)
    others = [e for e in entries if not (e.is_file() and any(fnmatch(e.name, n) for n in names))]
    if others and not _only_epoch_1s_row(others):
        return False
    try:
        with holding_now(run_dir / LOCK):
            return True
    except (Held, OSError):
        return False  # a live process trains it, or the folder can't be written


def fresh_folder(parent: Path, label: str, key: str) -> Path:
    """Make and return `parent/<label>-<time>` (with a counter if taken); never an existing one.

    `key` names the setting that chose `parent`, for the error message.
    """
    try:
        check_folder_name(label)
    except ValueError as error:
        raise ConfigError(f"name {label!r}: {error}") from None
    _make_parent(parent, key)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        folder = parent / (f"{label}-{stamp}" if attempt == 1 else f"{label}-{stamp}-{attempt}")
        try:
            with _folder_errors(parent, key):
                folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise ConfigError(f"{key}: could not make a new folder in {parent}")


def _make_parent(parent: Path, key: str) -> None:
    with _folder_errors(parent, key):
        parent.mkdir(parents=True, exist_ok=True)


@contextmanager
def _folder_errors(parent: Path, key: str) -> Iterator[None]:
    """A parent that is a file, lies below one, or can't be written: one line naming `key`."""
    try:
        yield
    except FileExistsError:
        if parent.is_dir():
            raise  # the run folder itself exists: the caller says what to do
        raise ConfigError(f"{key}: {parent} is a file, not a folder; choose another") from None
    except OSError as error:
        raise ConfigError(
            f"{key}: can't make a folder in {parent} ({error.strerror}); choose a writable one"
        ) from None


@contextmanager
def held(run_dir: Path, holder: bool = True) -> Iterator[None]:
    """One process at a time trains `run_dir` (`holder`: this one takes the lock, rank 0's)."""
    if not holder:
        yield
        return
    with ExitStack() as stack:
        try:
            stack.enter_context(holding_now(run_dir / LOCK))
        except Held as held:
            who = f"process {held.owner}" if held.owner else "another process"
            raise ConfigError(
                f"{run_dir}: {who} is training this run now; wait for it to end, or stop it first"
            ) from None
        except OSError as error:
            raise ConfigError(
                f"{run_dir}: can't write in this run folder ({error.strerror})"
            ) from None
        yield


def write_config(config: Config, run_dir: Path) -> None:
    save_config(config, run_dir / CONFIG)
    typed = typed_paths_comment()  # what the user typed, where it differs from what is stored
    if typed:
        path = run_dir / CONFIG
        path.write_text(typed + path.read_text())


# --- resuming one -------------------------------------------------------------------------------


def load_resume(run_dir: Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[Config, dict]:
    """The run's config (with the few `--set` changes a resume allows) and its `last.pt`.

    The checkpoint is read once, here, and handed to the training loop.
    """
    for assignment in overrides:
        key = assignment.partition("=")[0].strip()
        if key not in RESUMABLE_KEYS:
            raise ConfigError(
                f"--set {key}: only {', '.join(RESUMABLE_KEYS[:-1])} and {RESUMABLE_KEYS[-1]} "
                "can change on --resume"
            )
    if run_dir.is_dir() and stopped_before_its_first_checkpoint(run_dir):
        raise ConfigError(
            f"{run_dir}: its run stopped before its first checkpoint, so there is nothing to "
            "resume; start it again with the command that started it (the folder is reused)"
        )
    checkpoint = load_checkpoint(run_dir, prefer=LAST)
    data = checkpoint["config"]
    for assignment in overrides:
        apply_override(data, assignment)
    return validate(data, source=str(checkpoint["path"])), checkpoint


# --- metrics.csv ----------------------------------------------------------------------------------


def read_metrics(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as file:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(file)]


def run_metrics(run_dir: Path) -> list[dict[str, float]]:
    """A run's rows, or none if it stopped before its first epoch ended."""
    path = run_dir / METRICS
    return read_metrics(path) if path.exists() else []


def append_metrics_row(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=METRICS_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(rounded_row(row))  # accuracy to 1e-4, losses to 6 figures


def keep_metrics_rows(path: Path, epochs: int) -> None:
    """On resume, drop rows of epochs the checkpoint had not completed (killed between writes)."""
    if not path.exists():
        return
    rows = [r for r in read_metrics(path) if r["epoch"] <= epochs]
    path.unlink()
    for r in rows:
        append_metrics_row(path, {k: (int(v) if k == "epoch" else v) for k, v in r.items()})


def draw_curves(run_dir: Path) -> None:
    """curves.png from metrics.csv (matplotlib imported only now: it takes a while)."""
    rows = run_metrics(run_dir)
    if rows:
        from catdog.plots import plot_curves

        plot_curves(rows, run_dir / CURVES, title=curves_title(run_dir))


def curves_title(run_dir: Path) -> str:
    """`RUN: optimizer NAME, lr LR` from the run's config.yaml (the genetic one takes no lr)."""
    optimizer = read_config_file(run_dir / CONFIG).get("optimizer") or {}
    lr = f", lr {optimizer['lr']:g}" if isinstance(optimizer.get("lr"), float | int) else ""
    return f"{run_dir.name}: {optimizer.get('name', 'sgd')}{lr}"
