"""What `catdog landscape` prints and draws: `summary_lines`, `draw_landscape`, `write_landscape`.

The picture has three panels: the runs' paths over the loss contours of their PCA plane
(the colours, markers and legend of `ravine.png`: run k in colour Ck, a "classic" run dashed),
the training and validation loss along θ₀ → θ₁, and 2/λ_max at the start, middle and end of
each run against the lr it used. Import lazily: matplotlib takes a while to load.
"""

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from catdog.config import Config
from catdog.landscape import ALPHAS, Landscape, measure_landscape
from catdog.plane import successive_cosines, weight_space_cosines
from catdog.plots import new_figure, save


def own_limit(config: Config, largest: float) -> tuple[str, float] | None:
    """The largest stable lr of a momentum run on a quadratic of top curvature `largest`.

    Heavy ball (classic form) is stable for lr < 2(1+β)/λ; the EMA form's lr is the classic
    one over (1−β); Nesterov's limit is 2(1+β)/((1+2β)λ). Plain SGD's is 2/λ, printed anyway.
    """
    name = config.optimizer.name
    beta = float(config.optimizer.hyperparameters.get("beta", 0.9))
    if name == "momentum":
        if config.optimizer.hyperparameters.get("formulation", "ema") == "ema":
            return "2(1+β)/((1−β)λ_max)", 2 * (1 + beta) / ((1 - beta) * largest)
        return "2(1+β)/λ_max", 2 * (1 + beta) / largest
    if name == "nesterov":
        return "2(1+β)/((1+2β)λ_max)", 2 * (1 + beta) / ((1 + 2 * beta) * largest)
    return None


def ravine_style(config: Config, index: int) -> tuple[str, str]:
    """(colour, line style) of `ravine.png`'s racer of the same optimizer: SGD C0, momentum
    EMA C1, momentum classic C2 dashed, Nesterov C3; any other run C4, C5, … by its place."""
    hyperparameters = config.optimizer.hyperparameters
    name = config.optimizer.name
    if name == "momentum":
        classic = hyperparameters.get("formulation", "ema") == "classic"
        return ("C2", "--") if classic else ("C1", "-")
    known = {"sgd": "C0", "nesterov": "C3"}
    return known.get(name, f"C{(4 + index) % 10}"), "-"


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else math.nan


def summary_lines(landscape: Landscape) -> list[str]:
    """The figures' story in words, as `catdog figures` prints its own."""
    runs, plane = landscape.runs, landscape.plane
    size = sum(run.trajectory.size_bytes for run in runs)
    rows = sum(len(run.trajectory) for run in runs)
    first, second = plane.explained
    losses = landscape.grid.losses
    lines = [
        f"{len(runs)} run{'s' * (len(runs) > 1)} of one {len(plane.origin):,}-weight network: "
        f"{rows} recorded rows, {size / 2**20:,.1f} MiB of float16",
        f"plane: u₁ explains {first:.1%} and u₂ {second:.1%} of the variance of the recorded "
        f"weights, {first + second:.1%} together; training loss over it "
        f"{losses.min():.4f} … {losses.max():.4f}",
    ]
    for run, path, line, points in zip(
        runs, plane.paths, landscape.lines, landscape.points, strict=True
    ):
        at = {round(float(a), 6): i for i, a in enumerate(line.alphas)}
        start, end = at[0.0], at[1.0]
        lines += [
            f"{run.label}:",
            f"  oscillation: mean cosine between successive updates "
            f"({run.trajectory.every} steps apart) {_mean(successive_cosines(path)):+.2f} in the "
            f"plane, {_mean(weight_space_cosines(run.trajectory)):+.2f} in all the weights "
            "(−1: zig-zag, +1: straight on)",
            f"  line θ₀ → θ₁: train loss {line.train[start]:.4f} → {line.train[end]:.4f} (lowest "
            f"{line.train.min():.4f} at α = {line.alphas[line.train.argmin()]:g}), validation "
            f"{line.val[start]:.4f} → {line.val[end]:.4f} (lowest {line.val.min():.4f} at "
            f"α = {line.alphas[line.val.argmin()]:g})",
        ]
        for point in points:
            curvature = point.curvature
            top = ", ".join(f"{value:.4g}" for value in curvature.top)
            used = (
                f"; lr {point.lr:g} = {point.lr / curvature.stable_lr:.2f} × 2/λ_max"
                if point.lr is not None
                else ""
            )
            limit = own_limit(run.config, curvature.largest)
            own = f" ({limit[0]} = {limit[1]:.4g})" if limit and curvature.largest > 0 else ""
            lines.append(
                f"  {point.name} (step {point.step}): top λ {top}; median |λ| "
                f"{curvature.median:.3g}, λ_max/median {curvature.steepness:.3g}; "
                f"2/λ_max = {curvature.stable_lr:.4g}{used}{own}"
            )
        above = [p.name for p in points if p.lr is not None and p.lr > p.curvature.stable_lr]
        lines.append(f"  lr above 2/λ_max at: {', '.join(above) or 'none'} (of start, middle, end)")
    lines.append(
        "time: "
        + ", ".join(f"{part} {seconds:.1f}s" for part, seconds in landscape.seconds.items())
    )
    return lines


def draw_landscape(landscape: Landscape, path: Path) -> Path:
    """The three panels (see the module docstring) into one PNG."""
    figure = new_figure(18, 5.4)
    plane_axes, line_axes, step_axes = figure.subplots(1, 3, width_ratios=(5, 4, 4))
    grid, plane = landscape.grid, landscape.plane
    levels = np.unique(np.quantile(grid.losses, np.linspace(0.02, 0.98, 12)))
    contours = plane_axes.contour(grid.a, grid.b, grid.losses, levels=levels, colors="lightgrey")
    plane_axes.clabel(contours, fontsize=6, fmt="%.3g")
    for index, (run, points) in enumerate(zip(landscape.runs, plane.paths, strict=True)):
        colour, dashed = ravine_style(run.config, index)
        cosine = _mean(successive_cosines(points))
        plane_axes.plot(
            points[:, 0],
            points[:, 1],
            dashed,
            color=colour,
            marker=".",
            markersize=3,
            linewidth=1,
            label=f"{_short(run.label)}: cos {cosine:+.2f}",
        )
        plane_axes.plot(points[-1, 0], points[-1, 1], "*", color=colour, markersize=10)
        line = landscape.lines[index]
        line_axes.plot(line.alphas, line.val, "-", color=colour)
        line_axes.plot(line.alphas, line.train, "--", color=colour, alpha=0.7)
        _draw_steps(step_axes, landscape, index, colour)
    for run_paths in plane.paths[:1]:
        plane_axes.plot(run_paths[0, 0], run_paths[0, 1], "ko", markersize=5)
    first, second = plane.explained
    plane_axes.set_title(
        f"Paths in the PCA plane, which explains {first + second:.1%} of the variance"
    )
    plane_axes.set_xlabel(f"u₁ ({first:.1%} of the variance)")
    plane_axes.set_ylabel(f"u₂ ({second:.1%})")
    plane_axes.legend(fontsize="small", loc="best")
    for alpha in (0, 1):
        line_axes.axvline(alpha, color="grey", linestyle=":", linewidth=1)
    line_axes.set_xlim(float(ALPHAS[0]), float(ALPHAS[-1]))
    line_axes.set_title("Loss along θ(α) = (1−α)θ₀ + αθ₁")
    line_axes.set_xlabel("α (0: the start, 1: the end)")
    line_axes.legend(
        [Line2D([], [], color="black"), Line2D([], [], color="black", linestyle="--")],
        ["validation loss", "training loss"],
        fontsize="small",
    )
    step_axes.set_yscale("log")
    step_axes.set_title("2/λ_max, the largest stable GD step (o), and each lr (- -)")
    step_axes.set_xlabel("step")
    for axes in (line_axes, step_axes):
        axes.grid(alpha=0.3)
    return save(figure, path)


def _short(label: str) -> str:
    """A comparison's label without the section names: "name=sgd, lr=0.1"."""
    return label.replace("optimizer.", "")


def _draw_steps(axes: Axes, landscape: Landscape, index: int, colour: str) -> None:
    """Run `index`'s 2/λ_max at its measured points, and its lr there."""
    points = landscape.points[index]
    steps = [p.step for p in points]
    axes.plot(steps, [p.curvature.stable_lr for p in points], "o-", color=colour)
    lrs = [p.lr for p in points]
    if all(lr is not None for lr in lrs):
        # Thinner for each later run, so runs of one lr stay visible one inside the other.
        width = max(3.0 - 0.7 * index, 0.8)
        axes.plot(steps, lrs, "--", color=colour, drawstyle="steps-post", linewidth=width)


def write_landscape(
    target: Path,
    out_dir: Path | None = None,
    say: Callable[[str], None] = print,
    **options: Any,
) -> tuple[Path, Path]:
    """Measure (`measure_landscape(target, **options)`), print the summary, and write
    `landscape.png` and `landscape.txt` into `out_dir` (default: `target/landscape`)."""
    out_dir = target / "landscape" if out_dir is None else out_dir
    say(f"landscape of {target}:")
    landscape = measure_landscape(target, say=say, **options)
    lines = summary_lines(landscape)
    out_dir.mkdir(parents=True, exist_ok=True)
    picture = draw_landscape(landscape, out_dir / "landscape.png")
    text = out_dir / "landscape.txt"
    text.write_text("\n".join(lines) + "\n")
    for line in lines:
        say(line)
    say(f"wrote {picture} and {text}")
    return picture, text
