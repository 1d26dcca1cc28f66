"""Pictures of runs: one run's curves (`curves.png`) and several runs side by side.

Figures are drawn with matplotlib's object API on its Agg canvas: no pyplot, no window, no
global backend switch, so this works on a headless machine and leaves callers' matplotlib
state alone. Import this module lazily: matplotlib takes a while to load.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

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
    """One run: train and validation loss per epoch, and validation accuracy per epoch."""
    figure = new_figure(10, 4)
    if title:
        figure.suptitle(title)
    loss, accuracy = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in rows]
    loss.plot(epochs, [row["train_loss"] for row in rows], "o-", label="train")
    loss.plot(epochs, [row["val_loss"] for row in rows], "o-", label="validation")
    _label(loss, "epoch", "loss", "Loss")
    loss.legend()
    accuracy.plot(epochs, [row["val_accuracy"] for row in rows], "o-", color="C2")
    _label(accuracy, "epoch", "accuracy", "Validation accuracy")
    _integer_epochs(loss, accuracy)
    return save(figure, path)


@dataclass
class Curve:
    """One run of a comparison: its legend label and metrics rows."""

    label: str
    rows: Rows


def plot_comparison(
    curves: Sequence[Curve], path: Path, title: str = "", target_loss: float | None = None
) -> Path:
    """Several runs, one colour each: loss per epoch and per second, accuracy per epoch.

    Loss panels draw validation loss solid and training loss dashed; `target_loss` is a
    dotted line on both. The legend sits under the panels, one run a line, so long labels
    never squeeze or cover a curve.
    """
    has_target = target_loss is not None and math.isfinite(target_loss)
    legend_lines = len(curves) + 2 + has_target
    figure = new_figure(15, 4.5 + 0.22 * legend_lines)
    if title:
        figure.suptitle(title)
    per_epoch, per_second, accuracy = figure.subplots(1, 3)
    for index, curve in enumerate(curves):
        colour = f"C{index % 10}"
        epochs = [row["epoch"] for row in curve.rows]
        seconds = [row["elapsed"] for row in curve.rows]
        train_loss = [row["train_loss"] for row in curve.rows]
        val_loss = [row["val_loss"] for row in curve.rows]
        val_accuracy = [row["val_accuracy"] for row in curve.rows]
        per_epoch.plot(epochs, val_loss, "o-", color=colour, markersize=3)
        per_epoch.plot(epochs, train_loss, "--", color=colour, alpha=0.7)
        per_second.plot(seconds, val_loss, "o-", color=colour, markersize=3)
        per_second.plot(seconds, train_loss, "--", color=colour, alpha=0.7)
        accuracy.plot(epochs, val_accuracy, "o-", color=colour, markersize=3)
    if has_target:
        for axes in (per_epoch, per_second):
            axes.axhline(target_loss, color="grey", linestyle=":", linewidth=1)
    _label(per_epoch, "epoch", "loss", "Loss per epoch")
    _label(per_second, "training seconds", "loss", "Loss against wall-clock time")
    _label(accuracy, "epoch", "accuracy", "Validation accuracy")
    _integer_epochs(per_epoch, accuracy)

    handles = [
        Line2D([], [], color=f"C{i % 10}", marker="o", markersize=3) for i in range(len(curves))
    ]
    names = [curve.label for curve in curves]
    handles += [Line2D([], [], color="black"), Line2D([], [], color="black", linestyle="--")]
    names += ["validation loss", "training loss"]
    if has_target:
        handles.append(Line2D([], [], color="grey", linestyle=":"))
        names.append(f"target loss {target_loss:.4g}")
    figure.legend(handles, names, loc="outside lower center", frameon=False)
    return save(figure, path)


def _label(axes: Axes, x: str, y: str, title: str) -> None:
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    axes.set_title(title)
    axes.grid(alpha=0.3)


def _integer_epochs(*axes: Axes) -> None:
    for one in axes:
        one.xaxis.get_major_locator().set_params(integer=True)
