r"""A ravine race: our optimizers on a narrow quadratic valley, the picture behind momentum.

The ravine is

.. math::
    f(w) = \tfrac12\,(\mu\, w_1^2 + L\, w_2^2), \qquad \mu = 1,\ L = 100,

a valley L/μ = 100 times steeper across (w₂) than along (w₁), minimum f = 0 at the origin.
Gradient descent with step η multiplies each coordinate by 1 - ηλ per step (λ = μ or L): it
is stable only for η < 2/L, and its best constant step η = 2/(μ + L) still shrinks the distance
to the minimum by only (L - μ)/(L + μ) ≈ 0.98 per step, zig-zagging across the valley. Momentum
(heavy ball, classic form, β = 0.9) with η in ((1-√β)²/μ, (1+√β)²/L) shrinks it by √β ≈ 0.95
per step in *both* directions, whatever the curvature: the running average cancels the
zig-zag and adds up the steady slope along the valley.

Every descent runs one of `catdog.optim`'s optimizers on a 2-parameter float64 tensor.
"""

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from catdog.optim import build_optimizer, step

CURVATURES = (1.0, 100.0)
"""(μ, L): the curvature along and across the valley."""
START = (-10.0, 1.0)
TOLERANCE = 1e-6
"""A descent has arrived when f(w) < TOLERANCE (f starts at 100)."""
MAX_STEPS = 2000

_BETA = 0.9
# Inside ((1-√β)²/μ, (1+√β)²/L) = (0.0026, 0.038), where the heavy ball contracts by √β both
# ways, and under Nesterov's own limit 2(1+β)/((1+2β)L) = 0.0136. Not 1/L = 0.01: that step
# lands exactly on the valley floor and hides the oscillation momentum has to damp.
_HEAVY_BALL_LR = 0.008
RACERS: dict[str, tuple[str, dict[str, Any]]] = {
    # label: (optimizer name, hyperparameters)
    "SGD": ("sgd", {"lr": 2 / (CURVATURES[0] + CURVATURES[1])}),
    # Ng's EMA velocity is (1-β) times the classic one, so lr/(1-β) walks the classic path.
    "momentum (ema)": (
        "momentum",
        {"lr": _HEAVY_BALL_LR / (1 - _BETA), "beta": _BETA, "formulation": "ema"},
    ),
    "momentum (classic)": (
        "momentum",
        {"lr": _HEAVY_BALL_LR, "beta": _BETA, "formulation": "classic"},
    ),
    "Nesterov": ("nesterov", {"lr": _HEAVY_BALL_LR, "beta": _BETA}),
}
"""The race of the article's figure: SGD at its best constant step, momentum and Nesterov at
β = 0.9 with a step from the range where the heavy ball contracts by √β per step."""


def ravine(w: Tensor) -> Tensor:
    """f(w) = ½(μ w₁² + L w₂²), for a tensor whose last dimension holds (w₁, w₂)."""
    mu, big_l = CURVATURES
    return 0.5 * (mu * w[..., 0] ** 2 + big_l * w[..., 1] ** 2)


@dataclass
class Descent:
    """One optimizer's walk down the ravine."""

    label: str
    optimizer: str
    hyperparameters: dict[str, Any]
    path: Tensor
    """(steps + 1, 2): the weights from the start, one row per step."""
    losses: Tensor
    """f at each row of `path`."""
    steps_to_tolerance: int | None
    """The first step after which f < tolerance; None if it never got there."""


def descend(
    label: str,
    optimizer: str,
    hyperparameters: dict[str, Any],
    start: tuple[float, float] = START,
    tolerance: float = TOLERANCE,
    max_steps: int = MAX_STEPS,
) -> Descent:
    """Step `optimizer` on the ravine from `start` until f < tolerance or `max_steps`."""
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = build_optimizer(optimizer, [w], **hyperparameters)

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        loss = ravine(w)
        loss.backward()
        return loss

    path = [w.detach().clone()]
    arrived = None
    for count in range(1, max_steps + 1):
        step(opt, closure)
        path.append(w.detach().clone())
        if ravine(path[-1]).item() < tolerance:
            arrived = count
            break
    weights = torch.stack(path)
    return Descent(label, optimizer, hyperparameters, weights, ravine(weights), arrived)


def race(
    start: tuple[float, float] = START,
    tolerance: float = TOLERANCE,
    max_steps: int = MAX_STEPS,
) -> list[Descent]:
    """Every optimizer of `RACERS` from the same start."""
    return [
        descend(label, name, hyperparameters, start, tolerance, max_steps)
        for label, (name, hyperparameters) in RACERS.items()
    ]
