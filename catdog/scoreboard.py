"""The table of a comparison: per run, the numbers read off its `metrics.csv`.

Per run: best and final validation accuracy and loss, the epochs and training seconds it took to
first reach a validation-loss target, and its total training seconds (`elapsed` of its last
epoch). The default target is the worst run's best validation loss, the lowest loss every run
reaches, so "how fast to get there" has an answer for all of them.
"""

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

Rows = Sequence[dict[str, float]]

DEFAULT_TARGET = "the worst run's best validation loss (default), so every run reaches it"


@dataclass
class RunScore:
    label: str
    folder: str
    epochs: int
    best_accuracy: float
    best_accuracy_epoch: int | None
    final_accuracy: float
    best_loss: float
    final_loss: float
    epochs_to_target: int | None
    seconds_to_target: float | None
    seconds: float
    diverged: bool


@dataclass
class Scoreboard:
    runs: list[RunScore]
    target_loss: float
    target_source: str
    """Where the target came from: `--target-loss`, or `DEFAULT_TARGET`."""


def score(
    results: Sequence[tuple[str, Path, Rows, str | None]], target_loss: float | None = None
) -> Scoreboard:
    """Score each (label, run folder, metrics rows, divergence message or None)."""
    source = "--target-loss"
    if target_loss is None:
        bests = [min(row["val_loss"] for row in rows) for _, _, rows, _ in results if rows]
        target_loss = max(bests) if bests else math.nan
        source = DEFAULT_TARGET
    runs = [
        _score_run(label, run_dir.name, rows, target_loss, diverged is not None)
        for label, run_dir, rows, diverged in results
    ]
    return Scoreboard(runs, target_loss, source)


def _score_run(label: str, folder: str, rows: Rows, target: float, diverged: bool) -> RunScore:
    if not rows:
        nan = math.nan
        return RunScore(label, folder, 0, nan, None, nan, nan, nan, None, None, 0.0, diverged)
    best = max(rows, key=lambda row: row["val_accuracy"])  # the first epoch of the best, as best.pt
    reached = next((row for row in rows if row["val_loss"] <= target), None)
    return RunScore(
        label=label,
        folder=folder,
        epochs=len(rows),
        best_accuracy=best["val_accuracy"],
        best_accuracy_epoch=int(best["epoch"]),
        final_accuracy=rows[-1]["val_accuracy"],
        best_loss=min(row["val_loss"] for row in rows),
        final_loss=rows[-1]["val_loss"],
        epochs_to_target=int(reached["epoch"]) if reached else None,
        seconds_to_target=reached["elapsed"] if reached else None,
        seconds=rows[-1]["elapsed"],
        diverged=diverged,
    )


HEADER = (
    "run",
    "best val acc (epoch)",
    "final val acc",
    "best val loss",
    "final val loss",
    "epochs to target",
    "seconds to target",
    "total seconds",
)


def markdown(board: Scoreboard) -> str:
    """The summary as Markdown: the target, then one table row per run."""
    lines = [
        f"Target validation loss: {board.target_loss:.4f}, {board.target_source}.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(HEADER))) + "|",
    ]
    for run in board.runs:
        best = (
            f"{run.best_accuracy:.2%} ({run.best_accuracy_epoch})"
            if run.best_accuracy_epoch
            else "—"
        )
        cells = [
            run.label + (" (diverged)" if run.diverged else ""),
            best,
            _percent(run.final_accuracy),
            _number(run.best_loss),
            _number(run.final_loss),
            str(run.epochs_to_target) if run.epochs_to_target is not None else "—",
            f"{run.seconds_to_target:.1f}" if run.seconds_to_target is not None else "—",
            f"{run.seconds:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_scoreboard(board: Scoreboard, folder: Path, title: str = "") -> None:
    """`summary.md` (title, target, table) and `summary.csv` (every field, one row per run)."""
    heading = f"# {title or folder.name}\n\n"
    (folder / "summary.md").write_text(heading + markdown(board))
    with (folder / "summary.csv").open("w", newline="") as file:
        fields = [*asdict(board.runs[0]), "target_loss"] if board.runs else ["target_loss"]
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        for run in board.runs:
            writer.writerow({**asdict(run), "target_loss": board.target_loss})


def _percent(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2%}"


def _number(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.4f}"
