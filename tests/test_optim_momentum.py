"""Proofs for the momentum family: torch equivalences, the EMA/classic scaling, closed forms,
and Nesterov's literal look-ahead against its closure-free reformulation."""

import copy
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from catdog.model import MLP
from catdog.optim import Momentum, Nesterov, ewa
from tests.optim_helpers import (  # noqa: F401
    DEVICES,
    PATHS,
    Factory,
    make_problem,
    path_tolerance,
    small_problem_settings,
    train,
)


def assert_same_params(ours: MLP, theirs: MLP, device: str, compiled: bool) -> None:
    tolerance = path_tolerance(device, compiled)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=tolerance)


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_classic_momentum_is_torch_sgd_with_momentum(
    device: str, weight_decay: float, compiled: bool
) -> None:
    model, x, y = make_problem(device, torch.float32)
    ours = train(
        model,
        x,
        y,
        lambda p: Momentum(p, 0.05, 0.9, "classic", weight_decay=weight_decay, compile=compiled),
        steps=100,
    )
    theirs = train(
        model,
        x,
        y,
        lambda p: torch.optim.SGD(
            p, lr=0.05, momentum=0.9, weight_decay=weight_decay, foreach=True
        ),
        steps=100,
    )
    assert_same_params(ours, theirs, device, compiled)


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_nesterov_is_torch_sgd_with_nesterov(
    device: str, weight_decay: float, compiled: bool
) -> None:
    """Same maths; we subtract lr·g and lr·β·v in two passes where torch first writes g + β·v
    into .grad, so the numbers differ by rounding only: within 1e-6 in float32 after 100 steps,
    ~1e-16 in float64."""
    for dtype, tolerance in [(torch.float32, 1e-6), (torch.float64, 1e-13)]:
        model, x, y = make_problem(device, dtype)
        ours = train(
            model,
            x,
            y,
            lambda p: Nesterov(p, 0.05, 0.9, weight_decay=weight_decay, compile=compiled),
            100,
        )
        theirs = train(
            model,
            x,
            y,
            lambda p: torch.optim.SGD(
                p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=weight_decay, foreach=True
            ),
            steps=100,
        )
        for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=tolerance)
        assert not torch.allclose(next(ours.parameters()), next(model.parameters()), atol=1e-2)


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bias_correction", [False, True])
def test_ema_with_lr_walks_the_path_of_classic_with_lr_times_one_minus_beta(
    device: str, bias_correction: bool, compiled: bool
) -> None:
    """v_ema = (1-β)·v_classic by induction, so lr·v_ema = (lr(1-β))·v_classic, step after step."""
    model, x, y = make_problem(device, torch.float64)
    lr, beta = 0.5, 0.9
    ema = train(
        model,
        x,
        y,
        lambda p: Momentum(p, lr, beta, "ema", bias_correction, compile=compiled),
        steps=100,
    )
    classic = train(
        model,
        x,
        y,
        lambda p: Momentum(p, lr * (1 - beta), beta, "classic", bias_correction, compile=compiled),
        steps=100,
    )
    for a, b in zip(ema.parameters(), classic.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # The two really moved: the check above is not comparing starting points.
    assert not torch.allclose(next(ema.parameters()), next(model.parameters()), atol=1e-3)


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("device", DEVICES)
def test_ema_differs_from_torch_dampening_by_exactly_the_first_gradient_decayed(
    device: str, compiled: bool
) -> None:
    r"""torch's `SGD(momentum=β, dampening=β)` starts its buffer at b₁ = g₁; ours at v₁ = (1-β)g₁.

    Both then follow x_t = β x_{t-1} + (1-β) g_t, so the gap d_t = b_t - v_t obeys d_t = β d_{t-1}
    with d₁ = g₁ - (1-β)g₁ = βg₁: d_t = βᵗ g₁. Fed the same gradients, the weights then differ by
    w^torch_t - w^ours_t = -lr Σ_{k≤t} d_k = -lr g₁ β(1-βᵗ)/(1-β).
    """
    lr, beta, steps = 0.1, 0.9, 30
    generator = torch.Generator().manual_seed(1)
    gradients = torch.randn(steps, 7, generator=generator, dtype=torch.float64).to(device)
    start = torch.randn(7, generator=generator, dtype=torch.float64).to(device)
    ours = torch.nn.Parameter(start.clone())
    theirs = torch.nn.Parameter(start.clone())
    ours_optimizer = Momentum([ours], lr, beta, formulation="ema", compile=compiled)
    theirs_optimizer = torch.optim.SGD([theirs], lr, momentum=beta, dampening=beta, foreach=True)
    g1 = gradients[0]
    for t in range(1, steps + 1):
        ours.grad = gradients[t - 1].clone()
        theirs.grad = gradients[t - 1].clone()
        ours_optimizer.step()
        theirs_optimizer.step()
        buffer_gap = (
            theirs_optimizer.state[theirs]["momentum_buffer"]
            - ours_optimizer.state[ours]["velocity"]
        )
        torch.testing.assert_close(buffer_gap, beta**t * g1, rtol=1e-12, atol=1e-14)
        weight_gap = theirs.detach() - ours.detach()
        predicted = -lr * g1 * beta * (1 - beta**t) / (1 - beta)
        torch.testing.assert_close(weight_gap, predicted, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bias_correction", [False, True])
def test_ema_velocity_is_ewa_of_the_gradients(
    device: str, bias_correction: bool, compiled: bool
) -> None:
    """The velocity after t steps is `ewa` of the first t gradients (the figures' average), bit for
    bit eagerly: both run the one shared EMA update (compiled, Inductor's fused loop may round
    differently). With bias correction each step is lr·ewa-corrected."""
    lr, beta, steps = 0.1, 0.9, 40
    generator = torch.Generator().manual_seed(8)
    gradients = torch.randn(steps, 3, 4, generator=generator, dtype=torch.float64).to(device)
    weight = torch.nn.Parameter(torch.zeros(3, 4, dtype=torch.float64, device=device))
    optimizer = Momentum([weight], lr, beta, "ema", bias_correction, compile=compiled)
    averages = ewa(gradients, beta)
    corrected = ewa(gradients, beta, bias_correction=True)
    for t in range(steps):
        before = weight.detach().clone()
        weight.grad = gradients[t].clone()
        optimizer.step()
        velocity = optimizer.state[weight]["velocity"]
        if compiled:
            torch.testing.assert_close(velocity, averages[t], rtol=1e-14, atol=1e-16)
        else:
            assert torch.equal(velocity, averages[t])
        moved = corrected[t] if bias_correction else averages[t]
        torch.testing.assert_close(before - weight.detach(), lr * moved, rtol=1e-12, atol=1e-15)


def closed_form_velocity(formulation: str, beta: float, t: int, g: torch.Tensor) -> torch.Tensor:
    """v_t for a constant gradient g: ema (1-βᵗ)g; classic Σ_{k<t} βᵏ g = (1-βᵗ)/(1-β) g."""
    if formulation == "ema":
        return (1 - beta**t) * g
    return (1 - beta**t) / (1 - beta) * g


# β = 0.5 with dyadic gradients keeps every velocity exactly representable: equality is bitwise.
@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("beta", [0.5, 0.9])
@pytest.mark.parametrize("formulation", ["ema", "classic"])
@pytest.mark.parametrize("bias_correction", [False, True])
def test_constant_gradient_gives_the_closed_form_velocity_and_step(
    device: str, beta: float, formulation: str, bias_correction: bool, compiled: bool
) -> None:
    lr = 0.25
    g = torch.tensor([1.0, -0.75, 3.0, 0.0], dtype=torch.float64, device=device)
    weight = torch.nn.Parameter(torch.zeros_like(g))
    optimizer = Momentum([weight], lr, beta, formulation, bias_correction, compile=compiled)
    velocity_tolerance = 0.0 if beta == 0.5 else 1e-14
    for t in range(1, 31):
        before = weight.detach().clone()
        weight.grad = g.clone()
        optimizer.step()
        expected_velocity = closed_form_velocity(formulation, beta, t, g)
        torch.testing.assert_close(
            optimizer.state[weight]["velocity"],
            expected_velocity,
            rtol=velocity_tolerance,
            atol=0,
        )
        if bias_correction:
            # The correction cancels the zero start exactly: ema steps by g, classic by g/(1-β).
            expected_step = g if formulation == "ema" else g / (1 - beta)
        else:
            expected_step = expected_velocity
        torch.testing.assert_close(before - weight.detach(), lr * expected_step, rtol=1e-14, atol=0)
        assert optimizer.state[weight]["step"] == t


def quadratic_problem(
    device: str,
) -> tuple[torch.nn.Parameter, Callable[[torch.Tensor], torch.Tensor]]:
    """f(w) = ½ wᵀAw - bᵀw with A symmetric positive definite (eigenvalues 0.1 … 2), float64."""
    generator = torch.Generator().manual_seed(2)
    basis, _ = torch.linalg.qr(torch.randn(6, 6, generator=generator, dtype=torch.float64))
    a = (basis * torch.linspace(0.1, 2.0, 6, dtype=torch.float64)) @ basis.T
    b = torch.randn(6, generator=generator, dtype=torch.float64)
    a, b = a.to(device), b.to(device)
    start = torch.nn.Parameter(torch.randn(6, generator=generator, dtype=torch.float64).to(device))
    return start, lambda w: 0.5 * w @ a @ w - b @ w


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("problem", ["quadratic", "mlp"])
def test_nesterov_lookahead_and_reformulation_trace_the_same_path(
    device: str, weight_decay: float, problem: str, compiled: bool
) -> None:
    """The reformulation stores p_t = w_t - lr·β·v_t; the literal version stores w_t itself."""
    lr, beta = 0.1, 0.9
    if problem == "quadratic":
        start, f = quadratic_problem(device)
        literal_model: torch.nn.Module = torch.nn.ParameterList([start])
        reformulated_model: torch.nn.Module = copy.deepcopy(literal_model)

        def loss_of(model: torch.nn.Module) -> torch.Tensor:
            return f(model[0])

    else:
        mlp, x, y = make_problem(device, torch.float64)
        literal_model, reformulated_model = copy.deepcopy(mlp), copy.deepcopy(mlp)

        def loss_of(model: torch.nn.Module) -> torch.Tensor:
            return F.binary_cross_entropy_with_logits(model(x), y)

    literal = Nesterov(literal_model.parameters(), lr, beta, True, weight_decay, compile=compiled)
    reformulated = Nesterov(
        reformulated_model.parameters(), lr, beta, weight_decay=weight_decay, compile=compiled
    )

    def closure_for(model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = loss_of(model)
            loss.backward()
            return loss

        return closure

    for _ in range(50):
        literal_loss = literal.step(closure_for(literal_model, literal))
        reformulated_loss = reformulated.step(closure_for(reformulated_model, reformulated))
        # Both closures ran at the same look-ahead point, so they saw the same loss.
        torch.testing.assert_close(literal_loss, reformulated_loss, rtol=1e-12, atol=1e-12)
        for w, p in zip(literal_model.parameters(), reformulated_model.parameters(), strict=True):
            v_literal = literal.state[w]["velocity"]
            torch.testing.assert_close(
                v_literal, reformulated.state[p]["velocity"], rtol=1e-10, atol=1e-12
            )
            torch.testing.assert_close(
                w.detach() - lr * beta * v_literal, p.detach(), rtol=1e-10, atol=1e-12
            )
    # …and the stored points themselves differ: they are different points on the same path.
    w, p = next(literal_model.parameters()), next(reformulated_model.parameters())
    assert not torch.allclose(w, p, atol=1e-6)


def test_nesterov_needs_a_closure_only_when_looking_ahead_literally() -> None:
    weight = torch.nn.Parameter(torch.ones(3))
    assert Nesterov([weight], lr=0.1).needs_closure is False
    literal = Nesterov([weight], lr=0.1, lookahead=True)
    assert literal.needs_closure is True
    weight.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match="needs step\\(closure\\)"):
        literal.step()


def test_nesterov_lookahead_puts_the_weights_back_when_the_closure_raises() -> None:
    """A closure may raise mid-step (a NaN check, Ctrl-C); the weights must not stay shifted."""
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = Nesterov([weight], lr=0.1, lookahead=True)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (weight**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)  # gives the weight a velocity, so the next step moves it
    before = weight.detach().clone()

    def failing_closure() -> torch.Tensor:
        assert not torch.equal(weight, before)  # it really was at the look-ahead point
        raise FloatingPointError("loss is nan")

    with pytest.raises(FloatingPointError):
        optimizer.step(failing_closure)
    assert torch.equal(weight, before)
