"""Pictures of runs: one run's curves (`curves.png`) and several runs side by side.

Figures are drawn with matplotlib's object API on its Agg canvas: no pyplot, no window, no
global backend switch, so this works on a headless machine and leaves callers' matplotlib
state alone. Import this module lazily: matplotlib takes a while to load.
"""

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from catdog.optim.ewa import ewa

Rows = Sequence[dict[str, float]]
"""metrics.csv rows: epoch, train_loss, val_loss, val_accuracy, lr, seconds, elapsed."""

DPI = 100


def new_figure(width: float, height: float) -> Figure:
    """A figure of width by height inches on an Agg canvas, laid out to fit its labels."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI)
    return path


def plot_curves(rows: Rows, path: Path, title: str = "") -> Path:
    """One run: train and validation loss per epoch, and validation accuracy per epoch in
    percent (as the CLI prints it), the best epoch (the one best.pt holds) marked on both."""
    figure = new_figure(10, 4)
    if title:
        figure.suptitle(title)
    loss, accuracy = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in rows]
    best = max(rows, key=lambda row: row["val_accuracy"])  # the first of equals, as best.pt
    mark = f"best: epoch {best['epoch']:.0f}, {best['val_accuracy']:.2%}"
    loss.plot(epochs, [row["train_loss"] for row in rows], "o-", label="train")
    loss.plot(epochs, [row["val_loss"] for row in rows], "o-", label="validation")
    percent = [100 * row["val_accuracy"] for row in rows]
    accuracy.plot(epochs, percent, "o-", color="C2", label="validation")
    for axes in (loss, accuracy):
        axes.axvline(best["epoch"], color="grey", linestyle=":", label=mark)
    accuracy.plot([best["epoch"]], [100 * best["val_accuracy"]], "*", color="C3", markersize=14)
    _label(loss, "epoch", "loss", "Loss")
    _label(accuracy, "epoch", "accuracy (%)", "Validation accuracy")
    loss.legend()
    accuracy.legend()
    _integer_epochs(loss, accuracy)
    return save(figure, path)


@dataclass
class Curve:
    """One run of a comparison, or one planned run over its seeds."""

    label: str
    rows: Rows
    """metrics.csv rows of the run (of its first seed when `seeds` is given)."""
    seeds: Sequence[Rows] = ()
    """Every seed's metrics rows: the panels draw their mean and a band of ± 1 std."""
    steps: Sequence[Rows] = ()
    """steps.csv rows of each seed (or of the run): the per-step panel draws their mean."""
    failed: str = ""
    """"diverged" or "stuck": drawn thin and marked; the axes are not fitted to it."""

    @property
    def runs(self) -> Sequence[Rows]:
        return self.seeds or [self.rows]


STEP_EPOCHS = 3
"""The per-step panel shows the first this many epochs: where the optimizers differ most."""
STEP_SMOOTHING = 0.9
"""β of the per-step loss's bias-corrected moving average."""


def plot_comparison(
    curves: Sequence[Curve],
    path: Path,
    title: str = "",
    target_loss: float | None = None,
    log_y: bool = False,
) -> Path:
    """Several runs, one colour each: loss per epoch and per second, accuracy per epoch, and
    (when the runs logged steps) the smoothed training loss per step over the first epochs.

    Loss panels draw validation loss solid and training loss dashed; `target_loss` is a
    dotted line on both. Over seeds each line is the mean and the band ± 1 standard deviation.
    The loss axes fit the runs that learned, so a stuck run's 0.5 does not squash the rest.
    The legend sits under the panels, one run a line, so long labels never squeeze or cover
    a curve.
    """
    has_target = target_loss is not None and math.isfinite(target_loss)
    has_steps = any(curve.steps for curve in curves)
    legend_lines = len(curves) + 2 + has_target
    rows_of_panels = 2 if has_steps else 1
    figure = new_figure(15, 4.5 * rows_of_panels + 0.22 * legend_lines)
    if title:
        figure.suptitle(title)
    panels = figure.subplots(rows_of_panels, 3, squeeze=False)
    per_epoch, per_second, accuracy = panels[0]
    fitted: list[float] = []
    banded = any(len(curve.runs) > 1 for curve in curves)
    for index, curve in enumerate(curves):
        colour = f"C{index % 10}"
        width = 0.8 if curve.failed else 1.5
        epochs, mean, spread = _mean_curves(curve.runs)
        for key, style, axes_pair in (
            ("val_loss", "o-", (per_epoch, per_second)),
            ("train_loss", "--", (per_epoch, per_second)),
        ):
            for axes, x in zip(axes_pair, (epochs, mean["elapsed"]), strict=True):
                axes.plot(x, mean[key], style, color=colour, markersize=3, linewidth=width)
                if banded:
                    _band(axes, x, mean[key], spread[key], colour)
            if not curve.failed:
                fitted += [m + s for m, s in zip(mean[key], spread[key], strict=True)]
                fitted += [m - s for m, s in zip(mean[key], spread[key], strict=True)]
        accuracy.plot(epochs, mean["val_accuracy"], "o-", color=colour, markersize=3)
        if banded:
            _band(accuracy, epochs, mean["val_accuracy"], spread["val_accuracy"], colour)
    if has_target:
        for axes in (per_epoch, per_second):
            axes.axhline(target_loss, color="grey", linestyle=":", linewidth=1)
    _label(per_epoch, "epoch", "loss", "Loss per epoch")
    _label(per_second, "training seconds", "loss", "Loss against wall-clock time")
    _label(accuracy, "epoch", "accuracy", "Validation accuracy")
    _integer_epochs(per_epoch, accuracy)
    for axes in (per_epoch, per_second):
        _fit(axes, fitted, log_y)
    if has_steps:
        _steps_panel(figure, panels[1], curves, log_y)

    handles = [
        Line2D([], [], color=f"C{i % 10}", marker="o", markersize=3) for i in range(len(curves))
    ]
    names = [curve.label + (f" ({curve.failed})" if curve.failed else "") for curve in curves]
    handles += [Line2D([], [], color="black"), Line2D([], [], color="black", linestyle="--")]
    names += ["validation loss", "training loss"]
    if banded:
        names[-2] += " (mean over seeds; band: ± 1 std)"
    if has_target:
        handles.append(Line2D([], [], color="grey", linestyle=":"))
        names.append(f"target loss {target_loss:.4g}")
    figure.legend(handles, names, loc="outside lower center", frameon=False)
    return save(figure, path)


def _mean_curves(
    runs: Sequence[Rows],
) -> tuple[list[float], dict[str, list[float]], dict[str, list[float]]]:
    """Per epoch, the mean and standard deviation (0 for one run) over the runs that have it."""
    keys = ("train_loss", "val_loss", "val_accuracy", "elapsed")
    longest = max((len(rows) for rows in runs), default=0)
    epochs: list[float] = []
    mean: dict[str, list[float]] = {key: [] for key in keys}
    spread: dict[str, list[float]] = {key: [] for key in keys}
    for e in range(longest):
        present = [rows[e] for rows in runs if len(rows) > e]
        epochs.append(present[0]["epoch"])
        for key in keys:
            values = [row[key] for row in present]
            mu = sum(values) / len(values)
            var = sum((v - mu) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0
            mean[key].append(mu)
            spread[key].append(math.sqrt(var))
    return epochs, mean, spread


def _band(
    axes: Axes, x: Sequence[float], mean: Sequence[float], std: Sequence[float], colour: str
) -> None:
    low = [m - s for m, s in zip(mean, std, strict=True)]
    high = [m + s for m, s in zip(mean, std, strict=True)]
    axes.fill_between(x, low, high, color=colour, alpha=0.15, linewidth=0)


def _fit(axes: Axes, values: Sequence[float], log_y: bool) -> None:
    """Loss limits around `values` (the runs that learned) with a 5% margin; log if asked."""
    finite = [v for v in values if math.isfinite(v) and (v > 0 or not log_y)]
    if log_y:
        axes.set_yscale("log")
    if not finite:
        return
    low, high = min(finite), max(finite)
    if log_y:
        span = math.log10(high / low) if high > low else 1.0
        axes.set_ylim(low / 10 ** (0.05 * span), high * 10 ** (0.05 * span))
    else:
        margin = 0.05 * (high - low) if high > low else 0.05 * abs(high) or 0.05
        axes.set_ylim(low - margin, high + margin)


def _steps_panel(figure: Figure, row: Sequence[Axes], curves: Sequence[Curve], log_y: bool) -> None:
    """The smoothed per-step training loss over the first STEP_EPOCHS epochs, across the row."""
    for axes in row[1:]:
        axes.remove()
    axes = row[0]
    spec = row[0].get_subplotspec().get_gridspec()
    axes.set_subplotspec(spec[1, :])
    fitted: list[float] = []
    for index, curve in enumerate(curves):
        if not curve.steps:
            continue
        # The mean over seeds, step by step, over the steps every seed has.
        length = min(len(steps) for steps in curve.steps)
        first = [s for s in curve.steps[0][:length] if s["epoch"] <= STEP_EPOCHS]
        mean = [
            sum(steps[i]["loss"] for steps in curve.steps) / len(curve.steps)
            for i in range(len(first))
        ]
        kept = [(s["epoch"], m) for s, m in zip(first, mean, strict=True) if math.isfinite(m)]
        if not kept:
            continue
        smooth = ewa([m for _, m in kept], STEP_SMOOTHING, bias_correction=True)
        axes.plot([e for e, _ in kept], smooth, color=f"C{index % 10}",
                  linewidth=0.8 if curve.failed else 1.2)  # fmt: skip
        if not curve.failed:
            fitted += smooth
    title = (
        f"Training loss per step (mean over seeds, moving average β = {STEP_SMOOTHING}), "
        "first epochs"
    )
    _label(axes, "epoch", "batch loss", title)
    _fit(axes, fitted, log_y)


def plot_tune(
    records: Sequence[Any],
    dimensions: Sequence[Any],
    objective: str,
    path: Path,
    best: Any = None,
) -> Path:
    """A tune: the objective against each searched key, one panel per key, a point per trial.

    Finished trials are dots, pruned ones crosses at their last reported figure, the best a
    star; a log-scaled key gets a log axis, a choice key one position per choice.
    """
    figure = new_figure(max(5.0, 4.5 * len(dimensions)), 4.2)
    panels = figure.subplots(1, max(len(dimensions), 1), squeeze=False)[0]
    shown = [r for r in records if r.value is not None and math.isfinite(r.value)]
    for axes, dimension in zip(panels, dimensions, strict=False):
        for state, marker, colour, name in (
            ("COMPLETE", "o", "C0", "finished"),
            ("PRUNED", "x", "C3", "pruned"),
        ):
            points = [r for r in shown if r.state == state and dimension.key in r.params]
            xs = [_position(dimension, r.params) for r in points]
            axes.scatter(xs, [r.value for r in points], marker=marker, color=colour, label=name)
        if best is not None and dimension.key in best.params:
            axes.scatter([_position(dimension, best.params)], [best.value], marker="*", s=200,
                         color="C1", label="best", zorder=3)  # fmt: skip
        if dimension.is_choice:
            axes.set_xticks(range(len(dimension.choices)))
            axes.set_xticklabels([json.dumps(c) for c in dimension.choices])
        elif dimension.log:
            axes.set_xscale("log")
        _label(axes, dimension.key, objective, f"{objective} against {dimension.key}")
    panels[0].legend()
    figure.suptitle(f"{len(records)} trials; lower is better" if objective == "val_loss"
                    else f"{len(records)} trials; higher is better")  # fmt: skip
    return save(figure, path)


def _position(dimension: Any, params: dict[str, Any]) -> float:
    value = dimension.value_of(params)
    if dimension.is_choice:
        return float([json.dumps(c) for c in dimension.choices].index(json.dumps(value)))
    return float(value)


def _label(axes: Axes, x: str, y: str, title: str) -> None:
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    axes.set_title(title)
    axes.grid(alpha=0.3)


def _integer_epochs(*axes: Axes) -> None:
    for one in axes:
        one.xaxis.get_major_locator().set_params(integer=True)
