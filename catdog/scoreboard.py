"""The table of a comparison: per run, the numbers read off its `metrics.csv`; over seeds, their
mean, spread and 95% interval, and which differences are significant.

Per run: best and final validation accuracy and loss, the epochs and training seconds it took to
first reach a validation-loss target, and its total training seconds (`elapsed` of its last
epoch). The default target is the worst best validation loss among the runs that learned (not
diverged, not stuck), the lowest loss every such run reaches, so "how fast to get there" has an
answer for all of them, and a run stuck at the MSE plateau of 0.5 does not set it.

Runs of one group (one planned run under several seeds) are aggregated with `catdog.stats`, and
every two groups are compared seed by seed (see `stats.paired_difference`).
"""

import csv
import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from catdog.stats import ALPHA, Difference, Estimate, estimate, holm, paired_difference

Rows = Sequence[dict[str, float]]

DEFAULT_TARGET = (
    "the worst run's best validation loss (default) among the runs that learned, "
    "so every one of them reaches it"
)
COMPARED = {
    "best_accuracy": "best validation accuracy",
    "final_accuracy": "final validation accuracy",
    "best_loss": "best validation loss",
}
"""The figures whose differences between groups are tested, seed by seed."""


@dataclass
class RunResult:
    """One finished (or failed) run of a comparison, as the scoreboard reads it."""

    label: str
    run_dir: Path
    rows: Rows
    diverged: str | None = None
    stuck: str | None = None
    group: str | None = None
    """The label shared by the seeds of one planned run; None: the run is its own group."""
    seed: int | None = None


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
    stuck: bool = False
    group: str = ""
    seed: int | None = None

    @property
    def learned(self) -> bool:
        return not (self.diverged or self.stuck)


@dataclass
class GroupScore:
    """One planned run over its seeds."""

    label: str
    seeds: list[int | None]
    figures: dict[str, Estimate]
    """best_accuracy, final_accuracy, best_loss, final_loss, epochs_to_target,
    seconds_to_target: each over the seeds that have it (a run that never reached the target
    has no epochs to it)."""
    reached: int
    diverged: int
    stuck: int


@dataclass
class Scoreboard:
    runs: list[RunScore]
    target_loss: float
    target_source: str
    """Where the target came from: `--target-loss`, or `DEFAULT_TARGET`."""
    groups: list[GroupScore] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)

    @property
    def seeded(self) -> bool:
        """Whether any group has several seeds (then the table shows means and intervals)."""
        return any(len(group.seeds) > 1 for group in self.groups)


def score(
    results: Sequence[RunResult | tuple[str, Path, Rows, str | None]],
    target_loss: float | None = None,
) -> Scoreboard:
    """Score each run; a tuple is (label, run folder, metrics rows, divergence message or None)."""
    runs_in = [r if isinstance(r, RunResult) else RunResult(*r) for r in results]
    source = "--target-loss"
    if target_loss is None:
        learned = [r for r in runs_in if r.rows and r.diverged is None and r.stuck is None]
        bests = [min(row["val_loss"] for row in r.rows) for r in learned or runs_in if r.rows]
        target_loss = max(bests) if bests else math.nan
        source = DEFAULT_TARGET
    runs = [_score_run(result, target_loss) for result in runs_in]
    groups = aggregate(runs)
    return Scoreboard(runs, target_loss, source, groups, compare_groups(runs, groups))


def _score_run(result: RunResult, target: float) -> RunScore:
    rows = result.rows
    folder = result.run_dir.name
    diverged, stuck = result.diverged is not None, result.stuck is not None
    group = result.group if result.group is not None else result.label
    if not rows:
        nan = math.nan
        return RunScore(
            result.label, folder, 0, nan, None, nan, nan, nan, None, None, 0.0,
            diverged, stuck, group, result.seed,
        )  # fmt: skip
    best = max(rows, key=lambda row: row["val_accuracy"])  # the first epoch of the best, as best.pt
    reached = next((row for row in rows if row["val_loss"] <= target), None)
    return RunScore(
        label=result.label,
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
        stuck=stuck,
        group=group,
        seed=result.seed,
    )


AGGREGATED = (
    "best_accuracy",
    "final_accuracy",
    "best_loss",
    "final_loss",
    "epochs_to_target",
    "seconds_to_target",
)


def aggregate(runs: Sequence[RunScore]) -> list[GroupScore]:
    """One GroupScore per group, in the order groups first appear."""
    groups: dict[str, list[RunScore]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    return [
        GroupScore(
            label=label,
            seeds=[run.seed for run in members],
            figures={key: estimate([getattr(run, key) for run in members]) for key in AGGREGATED},
            reached=sum(run.epochs_to_target is not None for run in members),
            diverged=sum(run.diverged for run in members),
            stuck=sum(run.stuck for run in members),
        )
        for label, members in groups.items()
    ]


def compare_groups(runs: Sequence[RunScore], groups: Sequence[GroupScore]) -> list[Difference]:
    """Every pair of groups, each compared figure, paired by seed; Holm-corrected per figure.

    Only groups with seeds in common and at least two seeds take part.
    """
    by_group: dict[str, dict[int, RunScore]] = {}
    for run in runs:
        if run.seed is not None:
            by_group.setdefault(run.group, {})[run.seed] = run
    labels = [g.label for g in groups if len(by_group.get(g.label, {})) >= 2]
    differences: list[Difference] = []
    for key, name in COMPARED.items():
        family = [
            paired_difference(
                a,
                b,
                name,
                {s: getattr(r, key) for s, r in by_group[a].items()},
                {s: getattr(r, key) for s, r in by_group[b].items()},
            )
            for a, b in itertools.combinations(labels, 2)
        ]
        differences += holm(family)
    return differences


# --- Markdown and CSV ---------------------------------------------------------------------

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
GROUP_HEADER = (
    "run",
    "seeds",
    "best val acc",
    "final val acc",
    "best val loss",
    "final val loss",
    "epochs to target",
    "seconds to target",
)


def markdown(board: Scoreboard) -> str:
    """The summary as Markdown: the target, the table over seeds (if any) and its significant
    differences, then one row per run."""
    lines = [f"Target validation loss: {board.target_loss:.4f}, {board.target_source}.", ""]
    if board.seeded:
        lines += [*_group_table(board), "", *_differences(board), "", "Every run:", ""]
    lines += _table(HEADER)
    for run in board.runs:
        best = (
            f"{run.best_accuracy:.2%} ({run.best_accuracy_epoch})"
            if run.best_accuracy_epoch
            else "—"
        )
        cells = [
            run.label + _marks(run),
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


def _table(header: Sequence[str]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]


def _group_table(board: Scoreboard) -> list[str]:
    lines = [
        "Mean ± half-width of the 95% confidence interval (Student's t) over the seeds; "
        "to target: over the seeds that reached it (how many in brackets).",
        "",
        *_table(GROUP_HEADER),
    ]
    for group in board.groups:
        f = group.figures
        failed = [f"{n} diverged" for n in [group.diverged] if n] + [
            f"{n} stuck" for n in [group.stuck] if n
        ]
        label = group.label + (f" ({', '.join(failed)})" if failed else "")
        cells = [
            label,
            str(len(group.seeds)),
            _interval(f["best_accuracy"], percent=True),
            _interval(f["final_accuracy"], percent=True),
            _interval(f["best_loss"]),
            _interval(f["final_loss"]),
            _interval(f["epochs_to_target"], digits=1) + f" ({group.reached})",
            _interval(f["seconds_to_target"], digits=1) + f" ({group.reached})",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _differences(board: Scoreboard) -> list[str]:
    """Plain sentences: the significant differences, or that there are none."""
    tested = [d for d in board.differences if not math.isnan(d.p_value)]
    pairs = len({(d.first, d.second) for d in board.differences})
    method = (
        "runs paired by seed (one seed: the same split, and the same initial weights for one "
        f"architecture); two-sided paired t-test, Holm-corrected over {pairs} "
        f"pair{'s' if pairs != 1 else ''} of runs, at the {ALPHA:.0%} level"
    )
    if not tested:
        return [
            "Significance: no difference could be tested (each pair needs at least 2 seeds in "
            "common that differ)."
        ]
    significant = [d for d in tested if d.significant]
    if not significant:
        return [
            f"Significance ({method}): **no difference between the runs is significant.** "
            "With these seeds, what separates them is within what another seed could change."
        ]
    lines = [f"Significant differences ({method}):", ""]
    for d in significant:
        loss = "loss" in d.metric
        better = d.first if (d.difference.mean < 0) == loss else d.second
        size = _signed(d.difference, percent=not loss)
        lines.append(
            f"- {d.metric}: {d.first} − {d.second} = {size} "
            f"(p = {d.adjusted_p:.3g} corrected, {d.difference.n} seeds): {better} is better."
        )
    rest = len(tested) - len(significant)
    lines += ["", f"The other {rest} tested differences are not significant."]
    return lines


def write_scoreboard(board: Scoreboard, folder: Path, title: str = "") -> None:
    """`summary.md` (title, target, tables), `summary.csv` (every field, one row per run), and
    with seeds `aggregate.csv` (one row per group: mean, std, interval of each figure)."""
    heading = f"# {title or folder.name}\n\n"
    (folder / "summary.md").write_text(heading + markdown(board))
    with (folder / "summary.csv").open("w", newline="") as file:
        fields = [*asdict(board.runs[0]), "target_loss"] if board.runs else ["target_loss"]
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        for run in board.runs:
            writer.writerow({**asdict(run), "target_loss": board.target_loss})
    if board.seeded:
        with (folder / "aggregate.csv").open("w", newline="") as file:
            writer = csv.writer(file)
            stats = ("mean", "std", "low", "high", "n")
            writer.writerow(["label", "seeds", *(f"{k}_{s}" for k in AGGREGATED for s in stats)])
            for group in board.groups:
                values = [getattr(group.figures[k], s) for k in AGGREGATED for s in stats]
                writer.writerow([group.label, len(group.seeds), *values])


def _marks(run: RunScore) -> str:
    return (" (diverged)" if run.diverged else "") + (" (stuck)" if run.stuck else "")


def _interval(value: Estimate, percent: bool = False, digits: int = 4) -> str:
    if value.n == 0:
        return "—"
    if percent:
        mean, half = f"{value.mean:.2%}", f"{value.half_width * 100:.2f}"
    else:
        mean, half = f"{value.mean:.{digits}f}", f"{value.half_width:.{digits}f}"
    return mean if math.isnan(value.half_width) else f"{mean} ± {half}"


def _signed(value: Estimate, percent: bool) -> str:
    scale, unit, digits = (100, " points", 2) if percent else (1, "", 4)
    mean = f"{value.mean * scale:+.{digits}f}{unit}"
    if math.isnan(value.half_width):
        return mean
    return f"{mean} (95% CI {value.low * scale:+.{digits}f} to {value.high * scale:+.{digits}f})"


def _percent(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2%}"


def _number(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.4f}"
