"""Hessian-vector products and eigenvalues against finite differences and exact Hessians."""

import pytest
import torch
from torch.func import functional_call

from catdog.hessian import (
    HVP,
    flatten,
    hvp_function,
    lanczos,
    measure_curvature,
    median_curvature,
    power_iteration,
    random_unit,
    ritz,
)
from catdog.losses import mse
from catdog.model import MLP
from catdog.ravine import CURVATURES, ravine


def small_network(seed: int = 0) -> tuple[MLP, torch.Tensor, torch.Tensor]:
    """A float64 MLP 6 → 8 → 6 → 1 (117 weights) and 40 random photos with labels; inputs of
    std 2 keep most ReLUs alive, so the Hessian has rank ~110, not the 1 of a dead network."""
    torch.manual_seed(seed)
    model = MLP(6, (8, 6)).double()
    x = 2 * torch.randn(40, 6, dtype=torch.float64)
    y = (torch.rand(40, dtype=torch.float64) > 0.5).double()
    return model, x, y


def exact_hessian(model: MLP, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """torch.autograd.functional.hessian of the loss as a function of the flat weights."""
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        parts = flat.split(sizes)
        weights = {n: t.reshape(s) for n, t, s in zip(names, parts, shapes, strict=True)}
        return mse(functional_call(model, weights, (x,)), y)

    flat = flatten([p.detach() for p in model.parameters()])
    return torch.autograd.functional.hessian(loss_of, flat)


def network_hvp(model: MLP, x: torch.Tensor, y: torch.Tensor) -> HVP:
    return hvp_function(mse(model(x), y), list(model.parameters()))


def gradient_at(model: MLP, x: torch.Tensor, y: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    torch.nn.utils.vector_to_parameters(flat, model.parameters())
    grads = torch.autograd.grad(mse(model(x), y), list(model.parameters()))
    return flatten(grads)


def test_hvp_matches_finite_differences_of_gradients() -> None:
    model, x, y = small_network()
    theta = flatten([p.detach().clone() for p in model.parameters()])
    v = random_unit(len(theta), seed=1, dtype=torch.float64)
    product = network_hvp(model, x, y)(v)
    eps = 1e-5
    central = (
        gradient_at(model, x, y, theta + eps * v) - gradient_at(model, x, y, theta - eps * v)
    ) / (2 * eps)
    assert product.norm() > 1e-3  # a real curvature, not a vanishing one
    assert torch.allclose(product, central, rtol=1e-6, atol=1e-9)


def test_hvp_matches_the_exact_hessian() -> None:
    model, x, y = small_network(seed=2)
    hessian = exact_hessian(model, x, y)
    hvp = network_hvp(model, x, y)
    for seed in range(3):
        v = random_unit(len(hessian), seed=seed, dtype=torch.float64)
        assert torch.allclose(hvp(v), hessian @ v, rtol=1e-10, atol=1e-12)


def quadratic_hvp() -> HVP:
    w = torch.tensor([0.3, -0.7], dtype=torch.float64, requires_grad=True)
    return hvp_function(ravine(w), [w])


def test_quadratic_eigenvalues_are_its_curvatures() -> None:
    mu, big_l = CURVATURES
    hvp = quadratic_hvp()
    start = torch.tensor([1.0, 1.0], dtype=torch.float64)
    assert power_iteration(hvp, start, iterations=500, tolerance=1e-12) == pytest.approx(big_l)
    values, _ = ritz(*lanczos(hvp, start, steps=10))  # stops after 2: the space is exhausted
    assert values.tolist() == pytest.approx([mu, big_l])
    found = measure_curvature(hvp, 2, k=2, steps=5, probes=1, dtype=torch.float64)
    assert found.top == pytest.approx([big_l, mu])
    assert found.stable_lr == pytest.approx(2 / big_l)
    assert found.products == 2


def test_top_eigenvalues_of_a_network_match_its_exact_hessian() -> None:
    model, x, y = small_network(seed=3)
    exact = torch.linalg.eigvalsh(exact_hessian(model, x, y)).flip(0)
    hvp = network_hvp(model, x, y)
    dim = len(exact)
    whole = measure_curvature(hvp, dim, k=3, steps=dim, probes=1, dtype=torch.float64)
    assert whole.top == pytest.approx(exact[:3].tolist(), rel=1e-8, abs=1e-10)
    # The top one converges long before the Krylov space is the whole space.
    few = measure_curvature(hvp, dim, k=1, steps=15, probes=2, dtype=torch.float64)
    assert few.largest == pytest.approx(float(exact[0]), rel=1e-4)
    assert few.largest <= float(exact[0]) * (1 + 1e-10)  # Ritz values are lower bounds
    assert power_iteration(hvp, random_unit(dim, 0, torch.float64), 2000, 1e-12) == pytest.approx(
        float(exact[exact.abs().argmax()]), rel=1e-4
    )


def test_median_curvature_of_a_known_spectrum() -> None:
    # H = diag(1 … 100, 201 eigenvalues evenly spaced): median 50.5; and a quarter negative.
    spectrum = torch.cat([torch.linspace(1, 100, 201), -torch.linspace(1, 10, 67)]).double()

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return spectrum * v

    found = measure_curvature(hvp, len(spectrum), k=2, steps=40, probes=8, dtype=torch.float64)
    exact = float(spectrum.abs().median())
    assert found.median == pytest.approx(exact, rel=0.15)
    assert found.top == pytest.approx([100.0, 99.505], rel=1e-3)
    assert found.steepness == pytest.approx(found.largest / found.median)
    # The weighted-median rule itself, on a density given exactly.
    nodes = torch.tensor([-5.0, 1.0, 2.0, 50.0], dtype=torch.float64)
    assert median_curvature(nodes, torch.tensor([0.3, 0.1, 0.2, 0.4]).double()) == 5.0


def test_measurement_is_deterministic_for_a_seed() -> None:
    model, x, y = small_network(seed=4)
    hvp = network_hvp(model, x, y)
    first = measure_curvature(hvp, 117, k=2, steps=10, seed=7, dtype=torch.float64)
    again = measure_curvature(hvp, 117, k=2, steps=10, seed=7, dtype=torch.float64)
    assert (first.top, first.median) == (again.top, again.median)


def test_bad_settings_name_the_value() -> None:
    with pytest.raises(ValueError, match="k=0"):
        measure_curvature(quadratic_hvp(), 2, k=0)
    with pytest.raises(ValueError, match="shape"):
        quadratic_hvp()(torch.zeros(3, dtype=torch.float64))
