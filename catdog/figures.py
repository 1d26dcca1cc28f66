r"""The article's figures, drawn from our own code: `catdog.optim.ewa` and our optimizers.

1. `ewa-smoothing.png`: the exponentially weighted average of a noisy cosine for β = 0.5, 0.9,
   0.98. A larger β averages more points (about 1/(1-β)), so it is smoother, and lags more.
2. `ewa-bias-correction.png`: the same average over the first steps, with and without bias
   correction; starting from v₀ = 0, the plain average begins far too low.
3. `ewa-weights.png`: the weight (1-β)β^k a point k steps back gets. It falls below 1/e of
   the newest point's weight after about 1/(1-β) steps, as β^(1/(1-β)) ≈ 1/e.
4. `ravine.png`: SGD, momentum (both forms) and Nesterov down a narrow valley
   (`catdog.ravine`): their paths over the contours, and the loss per step.

Each `draw_*` function writes one PNG and returns the lines of its printed summary.
"""

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from catdog.optim import ewa
from catdog.plots import new_figure, save
from catdog.ravine import CURVATURES, TOLERANCE, Descent, race, ravine

BETAS = (0.5, 0.9, 0.98)
STEPS = 400
PERIOD = 200
NOISE = 0.3


def noisy_cosine(
    steps: int = STEPS, period: int = PERIOD, noise: float = NOISE, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """(signal, observations): cos(2πt/period) for t = 0 … steps-1, plus N(0, noise²) noise."""
    t = torch.arange(steps, dtype=torch.float64)
    signal = torch.cos(2 * math.pi * t / period)
    generator = torch.Generator().manual_seed(seed)
    return signal, signal + noise * torch.randn(steps, generator=generator, dtype=torch.float64)


def lag(average: Tensor, signal: Tensor, max_shift: int) -> int:
    """The shift s ≤ max_shift that best lines `average[t]` up with `signal[t - s]`.

    Best: the largest correlation between the two (means removed), over t ≥ max_shift.
    """
    tail = average[max_shift:] - average[max_shift:].mean()

    def correlation(shift: int) -> float:
        earlier = signal[max_shift - shift : len(signal) - shift]
        return float(tail @ (earlier - earlier.mean()))

    return max(range(max_shift + 1), key=correlation)


def draw_smoothing(path: Path) -> list[str]:
    """Figure 1; summary: per β, the noise left and the lag, measured and in theory.

    The average is linear, so what is left of the noise is exactly ewa(noise); for white noise
    of variance σ² its variance tends to σ²(1-β)/(1+β). For a slowly varying signal the
    average trails by about β/(1-β) steps (less for faster change).
    """
    signal, observed = noisy_cosine()
    figure = new_figure(10, 4.5)
    axes = figure.subplots()
    axes.plot(observed, ".", color="lightgrey", markersize=3, label="noisy cosine")
    axes.plot(signal, color="black", linewidth=1, label="cosine without noise")
    lines = [f"noisy cosine: {STEPS} steps, period {PERIOD}, noise std {NOISE}"]
    burn_in = STEPS // 4  # leave out the start, where v₀ = 0 still pulls the average down
    for beta in BETAS:
        average = ewa(observed, beta)
        noise_left = (average - ewa(signal, beta))[burn_in:].std().item()
        theory = NOISE * math.sqrt((1 - beta) / (1 + beta))
        trailing = lag(average, signal, max_shift=burn_in)
        axes.plot(average, linewidth=1.5, label=f"β = {beta}")
        lines.append(
            f"β = {beta}: averages ~{1 / (1 - beta):.0f} points; noise left: std {noise_left:.3f} "
            f"(theory {theory:.3f}); lags the cosine by {trailing} step{'s' * (trailing != 1)} "
            f"(β/(1-β) = {beta / (1 - beta):.0f} for a slow signal)"
        )
    axes.set_title("Exponentially weighted averages: smoother, and later, as β grows")
    axes.set_xlabel("step t")
    axes.set_ylabel("value: observed θ_t and its average v_t")
    axes.legend(loc="lower left", fontsize="small")
    axes.grid(alpha=0.3)
    save(figure, path)
    return lines


def draw_bias_correction(path: Path, beta: float = 0.98, steps: int = 100) -> list[str]:
    """Figure 2; summary: the mean distance to the signal over the first 1/(1-β) steps."""
    signal, observed = noisy_cosine()
    signal, observed = signal[:steps], observed[:steps]
    plain = ewa(observed, beta)
    corrected = ewa(observed, beta, bias_correction=True)
    figure = new_figure(10, 4.5)
    axes = figure.subplots()
    axes.plot(observed, ".", color="lightgrey", markersize=4, label="noisy cosine")
    axes.plot(signal, color="black", linewidth=1, label="cosine without noise")
    axes.plot(plain, color="C0", label=f"EWA β = {beta}")
    axes.plot(corrected, color="C3", label=f"EWA β = {beta}, bias-corrected: v_t / (1 - β^t)")
    axes.set_title("Bias correction: the average starts from v₀ = 0, the correction undoes it")
    axes.set_xlabel("step t")
    axes.set_ylabel("value: observed θ_t and its average v_t")
    axes.legend(loc="lower left", fontsize="small")
    axes.grid(alpha=0.3)
    save(figure, path)
    early = round(1 / (1 - beta))
    gap_plain = (plain[:early] - signal[:early]).abs().mean().item()
    gap_corrected = (corrected[:early] - signal[:early]).abs().mean().item()
    return [
        f"β = {beta}, first {early} steps: mean |average - cosine| = {gap_plain:.3f} without, "
        f"{gap_corrected:.3f} with bias correction",
        f"step 1: data {observed[0].item():.3f}, plain average {plain[0].item():.3f}, "
        f"corrected {corrected[0].item():.3f}",
    ]


def past_weights(beta: float, count: int) -> Tensor:
    """The weight (1-β)β^k the average gives the point k = 0 … count-1 steps back.

    Read off `ewa` itself: averaging a single 1 followed by zeros, v after k more steps is
    exactly the weight that 1 still has.
    """
    impulse = torch.zeros(count, dtype=torch.float64)
    impulse[0] = 1.0
    return ewa(impulse, beta)


def draw_weights(path: Path, count: int = 150) -> list[str]:
    """Figure 3; summary: per β, after how many steps back a weight drops under 1/e."""
    figure = new_figure(11, 4.5)
    weights_axes, relative_axes = figure.subplots(1, 2)
    back = torch.arange(count)
    lines = []
    for index, beta in enumerate(BETAS):
        weights = past_weights(beta, count)
        relative = weights / weights[0]
        below = int(torch.nonzero(relative < 1 / math.e)[0])
        colour = f"C{index}"
        weights_axes.plot(back, weights, color=colour, label=f"β = {beta}")
        relative_axes.plot(back, relative, color=colour, label=f"β = {beta}")
        relative_axes.axvline(1 / (1 - beta), color=colour, linestyle=":", linewidth=1)
        lines.append(
            f"β = {beta}: a point {below} steps back weighs under 1/e of the newest "
            f"(1/(1-β) = {1 / (1 - beta):.0f}); the newest {count} points hold "
            f"{weights.sum().item():.1%} of the weight"
        )
    relative_axes.axhline(1 / math.e, color="black", linestyle="--", linewidth=1, label="1/e")
    weights_axes.set_title("Weight (1-β)·β^k of the point k steps back")
    weights_axes.set_yscale("log")
    weights_axes.set_ylim(1e-6, 1)
    relative_axes.set_title("Relative to the newest, β^k; dotted: k = 1/(1-β)")
    for axes in (weights_axes, relative_axes):
        axes.set_xlabel("steps back k = t - i")
        axes.legend(fontsize="small")
        axes.grid(alpha=0.3)
    save(figure, path)
    return lines


def draw_ravine(path: Path, descents: list[Descent] | None = None) -> list[str]:
    """Figure 4; summary: each optimizer's hyperparameters and steps to the tolerance."""
    descents = descents if descents is not None else race()
    figure = new_figure(12, 4.8)
    paths_axes, loss_axes = figure.subplots(1, 2, width_ratios=(3, 2))
    everything = torch.cat([descent.path for descent in descents])
    low, high = everything.min(dim=0).values, everything.max(dim=0).values
    margin = 0.1 * (high - low)
    x = torch.linspace(
        float(low[0] - margin[0]), float(high[0] + margin[0]), 200, dtype=torch.float64
    )
    y = torch.linspace(
        float(low[1] - margin[1]), float(high[1] + margin[1]), 200, dtype=torch.float64
    )
    grid_x, grid_y = torch.meshgrid(x, y, indexing="xy")
    heights = ravine(torch.stack([grid_x, grid_y], dim=-1))
    paths_axes.contour(
        grid_x, grid_y, heights, levels=[0.1, 0.3, 1, 3, 10, 30, 100], colors="lightgrey"
    )
    mu, big_l = CURVATURES
    lines = [
        f"ravine f(w) = ½({mu:g}·w₁² + {big_l:g}·w₂²) from {tuple(descents[0].path[0].tolist())}, "
        f"tolerance f < {TOLERANCE:g}"
    ]
    for index, descent in enumerate(descents):
        colour = f"C{index}"
        dashed = "--" if "classic" in descent.label else "-"
        steps = descent.steps_to_tolerance
        label = f"{descent.label}: {steps if steps is not None else 'not'} steps"
        paths_axes.plot(
            descent.path[:, 0],
            descent.path[:, 1],
            dashed,
            color=colour,
            marker=".",
            markersize=3,
            linewidth=1,
            label=label,
        )
        loss_axes.semilogy(descent.losses, dashed, color=colour, label=label)
        settings = ", ".join(
            f"{key}={_number(value)}" for key, value in descent.hyperparameters.items()
        )
        reached = (
            f"{steps} steps" if steps is not None else f"not within {len(descent.path) - 1} steps"
        )
        lines.append(f"{descent.label:<19} ({settings}): {reached}")
    loss_axes.axhline(TOLERANCE, color="black", linestyle=":", linewidth=1)
    paths_axes.plot([0], [0], "k*", markersize=10)
    paths_axes.set_title("Paths down the ravine (classic momentum runs on top of the EMA form)")
    paths_axes.set_xlabel("w₁ (gentle slope)")
    paths_axes.set_ylabel("w₂ (steep sides)")
    paths_axes.legend(fontsize="small", loc="upper right")
    loss_axes.set_title("f(w) per step; dotted: the tolerance")
    loss_axes.set_xlabel("step")
    loss_axes.grid(alpha=0.3)
    save(figure, path)
    return lines


FIGURES: dict[str, Callable[[Path], list[str]]] = {
    "ewa-smoothing.png": draw_smoothing,
    "ewa-bias-correction.png": draw_bias_correction,
    "ewa-weights.png": draw_weights,
    "ravine.png": draw_ravine,
}


def make_figures(out_dir: Path) -> dict[Path, list[str]]:
    """Write every figure into `out_dir` (made if missing); each path with its summary lines."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {out_dir / name: draw(out_dir / name) for name, draw in FIGURES.items()}


def _number(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
