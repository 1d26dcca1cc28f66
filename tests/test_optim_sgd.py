"""Proofs for plain SGD: torch's SGD op for op, and the closed form w - lr·(g + λw)."""

import pytest
import torch

from catdog.optim import SGD
from tests.optim_helpers import (  # noqa: F401
    DEVICES,
    PATHS,
    make_problem,
    path_tolerance,
    small_problem_settings,
    train,
)


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_sgd_is_torch_sgd(device: str, weight_decay: float, compiled: bool) -> None:
    model, x, y = make_problem(device, torch.float32)
    ours = train(model, x, y, lambda p: SGD(p, 0.1, weight_decay, compiled), steps=100)
    theirs = train(
        model,
        x,
        y,
        lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=weight_decay, foreach=True),
        steps=100,
    )
    tolerance = path_tolerance(device, compiled)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=tolerance)
    assert not torch.allclose(next(ours.parameters()), next(model.parameters()), atol=1e-2)


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_each_step_is_w_minus_lr_times_the_decayed_gradient(
    device: str, weight_decay: float, compiled: bool
) -> None:
    """Fed arbitrary gradients, every step is w - lr·(g + λw), computed here independently."""
    lr, steps = 0.3, 20
    generator = torch.Generator().manual_seed(7)
    gradients = torch.randn(steps, 2, 5, generator=generator, dtype=torch.float64).to(device)
    weight = torch.nn.Parameter(torch.randn(2, 5, generator=generator, dtype=torch.float64))
    weight = torch.nn.Parameter(weight.detach().to(device))
    optimizer = SGD([weight], lr=lr, weight_decay=weight_decay, compile=compiled)
    expected = weight.detach().clone()
    for g in gradients:
        weight.grad = g.clone()
        optimizer.step()
        expected = expected - lr * (g + weight_decay * expected)
        torch.testing.assert_close(weight.detach(), expected, rtol=1e-14, atol=1e-15)
        assert torch.equal(weight.grad, g)  # the decay went into a temporary, not into .grad
    assert not optimizer.state  # plain SGD keeps nothing between steps


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.5])
def test_on_a_quadratic_each_coordinate_shrinks_geometrically(
    weight_decay: float, compiled: bool
) -> None:
    """f = ½Σ c_i w_i²: g + λw = (c + λ)w, so w_t = (1 - lr(c + λ))ᵗ w_0 exactly in closed form."""
    lr = 0.1
    curvatures = torch.tensor([0.5, 1.0, 4.0, 9.0], dtype=torch.float64)
    start = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    weight = torch.nn.Parameter(start.clone())
    optimizer = SGD([weight], lr=lr, weight_decay=weight_decay, compile=compiled)
    for t in range(1, 51):
        optimizer.zero_grad()
        (0.5 * curvatures * weight**2).sum().backward()
        optimizer.step()
        closed_form = (1 - lr * (curvatures + weight_decay)) ** t * start
        torch.testing.assert_close(weight.detach(), closed_form, rtol=1e-12, atol=1e-300)
