"""Proofs for RMSprop and Adam: torch equivalences (and where they differ), closed forms."""

import copy

import pytest
import torch
import torch.nn.functional as F

from catdog.model import MLP
from catdog.optim import Adam, RMSprop
from tests.optim_helpers import (  # noqa: F401
    DEVICES,
    PATHS,
    make_problem,
    path_tolerance,
    small_problem_settings,
    train,
)


def max_difference(a: MLP, b: MLP) -> float:
    return max(
        (p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


def largest_rmsprop_step_difference(
    model: MLP, x: torch.Tensor, y: torch.Tensor, ours: RMSprop, steps: int
) -> float:
    """The most one step of `ours` differs from torch's RMSprop (alpha 0.9) taken from the same
    weights, gradients and mean squares, at each of `steps` points along torch's path.

    Re-synchronising each step measures the update itself: with eps = 1e-8 RMSprop is nearly
    sign descent, so over a whole run a one-ulp difference flips the sign of some near-zero
    gradient and grows to the size of a step (it did, at step 88, under Inductor's FMAs).
    """
    torch_model = copy.deepcopy(model)
    group = ours.param_groups[0]
    theirs = torch.optim.RMSprop(
        torch_model.parameters(),
        group["lr"],
        alpha=group["beta"],
        eps=group["eps"],
        weight_decay=group["weight_decay"],
        foreach=True,
    )
    ours_params = group["params"]
    largest = 0.0
    for _ in range(steps):
        theirs.zero_grad()
        F.binary_cross_entropy_with_logits(torch_model(x), y).backward()
        with torch.no_grad():
            for mine, their in zip(ours_params, torch_model.parameters(), strict=True):
                mine.copy_(their)
                mine.grad = their.grad.clone()
                if their in theirs.state:
                    ours.state[mine]["mean_square"] = theirs.state[their]["square_avg"].clone()
        ours.step()
        theirs.step()
        pairs = zip(ours_params, torch_model.parameters(), strict=True)
        largest = max(largest, *((a - b).abs().max().item() for a, b in pairs))
    return largest


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
@pytest.mark.parametrize("eps", [1e-8, 0.1])
def test_rmsprop_is_torch_rmsprop_with_alpha_beta(
    device: str, weight_decay: float, eps: float, compiled: bool
) -> None:
    """Same update, same eps placement (outside the root): same numbers, op for op.

    Eager runs torch's very kernels: 100 steps end bitwise equal. Compiled, each step may round
    differently, so each of the 100 steps is compared from the same state.
    """
    model, x, y = make_problem(device, torch.float32)
    factory = lambda p: RMSprop(p, 0.01, 0.9, eps, weight_decay, compiled)  # noqa: E731
    if compiled:
        ours = factory(list(copy.deepcopy(model).parameters()))
        difference = largest_rmsprop_step_difference(model, x, y, ours, steps=100)
        assert difference <= path_tolerance(device, compiled)
        moved = max(
            (a - b).abs().max().item()
            for a, b in zip(ours.param_groups[0]["params"], model.parameters(), strict=True)
        )
        assert moved > 1e-2  # the steps compared were real ones, far along the path
        return
    ours_model = train(model, x, y, factory, steps=100)
    theirs = train(
        model,
        x,
        y,
        lambda p: torch.optim.RMSprop(
            p, 0.01, alpha=0.9, eps=eps, weight_decay=weight_decay, foreach=True
        ),
        steps=100,
    )
    assert max_difference(ours_model, theirs) <= path_tolerance(device, compiled)
    assert max_difference(ours_model, model) > 1e-2


def test_rmsprop_default_beta_is_the_articles_not_torchs() -> None:
    """The one difference from torch.optim.RMSprop: β defaults to 0.9, torch's alpha to 0.99."""
    model, x, y = make_problem("cpu", torch.float32)
    ours = train(model, x, y, lambda p: RMSprop(p, lr=0.01), steps=20)
    torch_defaults = train(model, x, y, lambda p: torch.optim.RMSprop(p, lr=0.01), steps=20)
    torch_with_our_beta = train(
        model, x, y, lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9), steps=20
    )
    assert max_difference(ours, torch_with_our_beta) == 0.0
    assert max_difference(ours, torch_defaults) > 1e-4


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("eps", [1e-8, 0.1])
def test_rmsprop_constant_gradient_closed_form(device: str, eps: float, compiled: bool) -> None:
    """s_t = (1-βᵗ)g², so step t moves w by -lr·g/(|g|·√(1-βᵗ) + eps): eps outside the root.

    eps = 0.1 against |g| ~ 1 makes the placement visible (inside the root it would differ).
    """
    lr, beta = 0.01, 0.9
    g = torch.tensor([1.0, -0.5, 2.0, 0.0], dtype=torch.float64, device=device)
    weight = torch.nn.Parameter(torch.zeros_like(g))
    optimizer = RMSprop([weight], lr, beta, eps, compile=compiled)
    for t in range(1, 31):
        before = weight.detach().clone()
        weight.grad = g.clone()
        optimizer.step()
        correction = 1 - beta**t
        torch.testing.assert_close(
            optimizer.state[weight]["mean_square"], correction * g**2, rtol=1e-14, atol=0
        )
        expected = -lr * g / (g.abs() * correction**0.5 + eps)
        torch.testing.assert_close(weight.detach() - before, expected, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_adam_matches_torch_adam_up_to_rounding(
    device: str, weight_decay: float, compiled: bool
) -> None:
    """Same maths as torch.optim.Adam; we fold √(1-β₂ᵗ) into eps and the step size instead of
    dividing √s by it (one pass fewer), so the numbers differ only by rounding: ~1e-16 in float64
    after 100 steps, and within 1e-6 in float32."""
    for dtype, tolerance in [(torch.float64, 1e-13), (torch.float32, 1e-6)]:
        model, x, y = make_problem(device, dtype)
        ours = train(
            model,
            x,
            y,
            lambda p: Adam(p, 0.01, weight_decay=weight_decay, compile=compiled),
            steps=100,
        )
        theirs = train(
            model,
            x,
            y,
            lambda p: torch.optim.Adam(p, 0.01, weight_decay=weight_decay, foreach=True),
            steps=100,
        )
        assert max_difference(ours, theirs) <= tolerance, dtype
        assert max_difference(ours, model) > 1e-2


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("eps", [1e-8, 0.1])
def test_adam_constant_gradient_closed_form(device: str, eps: float, compiled: bool) -> None:
    """m_t = (1-β₁ᵗ)g and s_t = (1-β₂ᵗ)g², so m̂ = g, ŝ = g², and every step is -lr·g/(|g| + eps).

    With eps = 0.1, torch's placement (eps added to √ŝ, after bias correction) is what this
    checks: adding eps to the uncorrected √s instead would make early steps differ.
    """
    lr, betas = 0.01, (0.9, 0.999)
    g = torch.tensor([1.0, -0.5, 2.0, 0.0], dtype=torch.float64, device=device)
    weight = torch.nn.Parameter(torch.zeros_like(g))
    optimizer = Adam([weight], lr, betas, eps, compile=compiled)
    for t in range(1, 31):
        before = weight.detach().clone()
        weight.grad = g.clone()
        optimizer.step()
        state = optimizer.state[weight]
        torch.testing.assert_close(
            state["first_moment"], (1 - betas[0] ** t) * g, rtol=1e-14, atol=0
        )
        torch.testing.assert_close(
            state["second_moment"], (1 - betas[1] ** t) * g**2, rtol=1e-13, atol=0
        )
        assert state["step"] == t
        expected = -lr * g / (g.abs() + eps)
        torch.testing.assert_close(weight.detach() - before, expected, rtol=1e-12, atol=1e-300)
