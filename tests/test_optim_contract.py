"""What every optimizer promises the training loop: the registry, validation, lowering the loss,
bitwise resume, skipping params without grads, param groups, mixed dtypes, per-param steps."""

import copy
import io
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from catdog.model import MLP
from catdog.optim import (
    OPTIMIZERS,
    SGD,
    Adam,
    Genetic,
    Momentum,
    Nesterov,
    Optimizer,
    RMSprop,
    build_optimizer,
    step,
)
from tests.optim_helpers import DEVICES, small_problem_settings  # noqa: F401

# Registry name and hyperparameters, covering every code path of every optimizer.
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("sgd", {"lr": 0.5}),
    "sgd-decay": ("sgd", {"lr": 0.5, "weight_decay": 1e-3}),
    "momentum-ema": ("momentum", {"lr": 0.5}),
    "momentum-classic-corrected": (
        "momentum",
        {"lr": 0.05, "formulation": "classic", "bias_correction": True, "weight_decay": 1e-3},
    ),
    "nesterov": ("nesterov", {"lr": 0.05, "weight_decay": 1e-3}),
    "nesterov-lookahead": ("nesterov", {"lr": 0.05, "lookahead": True, "weight_decay": 1e-3}),
    "rmsprop": ("rmsprop", {"lr": 0.01, "weight_decay": 1e-3}),
    "adam": ("adam", {"lr": 0.01, "weight_decay": 1e-3}),
}


def build(config: str, params: Any, **overrides: Any) -> torch.optim.Optimizer:
    name, hyperparameters = CONFIGS[config]
    return build_optimizer(name, params, **(hyperparameters | overrides))


def separable_problem(device: str) -> tuple[MLP, torch.Tensor, torch.Tensor]:
    """64 points labelled by the side of a random hyperplane, and a 10 → 8 → 1 MLP."""
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(64, 10, generator=generator)
    y = (x @ torch.randn(10, generator=generator) > 0).float()
    torch.manual_seed(5)
    return MLP(10, (8,)).to(device), x.to(device), y.to(device)


def take_step(
    optimizer: torch.optim.Optimizer, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
) -> float:
    """One step through a closure (as the training loop does for optimizers that need one)."""

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        return loss

    return optimizer.step(closure).item()


def test_registry_builds_each_class_with_its_hyperparameters() -> None:
    ours = {
        "sgd": SGD,
        "momentum": Momentum,
        "nesterov": Nesterov,
        "rmsprop": RMSprop,
        "adam": Adam,
    }
    assert {name: OPTIMIZERS.get(name) for name in ours} == ours
    optimizer = build_optimizer("momentum", [torch.zeros(2, requires_grad=True)], lr=0.3, beta=0.8)
    assert isinstance(optimizer, Momentum)
    assert optimizer.param_groups[0]["lr"] == 0.3
    assert optimizer.param_groups[0]["beta"] == 0.8


@pytest.mark.parametrize("config", list(CONFIGS))
def test_only_literal_nesterov_needs_a_closure(config: str) -> None:
    optimizer = build(config, [torch.zeros(2, requires_grad=True)])
    assert isinstance(optimizer, Optimizer)
    assert optimizer.needs_closure is (config == "nesterov-lookahead")
    assert optimizer.uses_gradients is True


def test_the_genetic_algorithm_declares_it_evaluates_the_closure_without_gradients() -> None:
    assert issubclass(Genetic, Optimizer)
    assert Genetic.uses_gradients is False
    assert Genetic.needs_closure is True


class CountingSGD(SGD):
    """SGD that counts its `step` calls and whether each was given the closure."""

    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, lr)
        self.calls: list[bool] = []

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        self.calls.append(closure is not None)
        return super().step(closure)


@pytest.mark.parametrize("needs_closure", [False, True])
def test_step_runs_the_closure_once_itself_or_hands_it_over(needs_closure: bool) -> None:
    """`step(optimizer, closure)`: one forward/backward either way, and the loss it returned."""
    weight = torch.nn.Parameter(torch.tensor([3.0, -1.0]))
    optimizer = CountingSGD([weight], lr=0.25)
    optimizer.needs_closure = needs_closure
    evaluations = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (weight**2).sum()
        loss.backward()
        evaluations.append(loss.item())
        return loss

    loss = step(optimizer, closure)
    assert evaluations == [10.0]
    assert optimizer.calls == [needs_closure]
    assert loss.item() == 10.0 and not loss.requires_grad
    assert weight.tolist() == [1.5, -0.5]  # w - 0.25·2w


def test_step_returns_the_genetic_algorithms_best_loss_as_a_tensor() -> None:
    weight = torch.nn.Parameter(torch.tensor([3.0, -1.0]))
    optimizer = Genetic([weight], population=6, mutation_std=0.5)
    losses = []

    def closure() -> torch.Tensor:
        losses.append((weight**2).sum().item())
        return (weight**2).sum()

    with torch.no_grad():
        loss = step(optimizer, closure)
    assert len(losses) == 6  # one evaluation per member, made by the optimizer itself
    assert loss.item() == pytest.approx(min(losses))


@pytest.mark.parametrize("config", list(CONFIGS))
def test_memory_bytes_covers_the_state_the_optimizer_keeps(config: str) -> None:
    """The estimate the loop checks before a run is at least the state a step really allocates."""
    model, x, y = separable_problem("cpu")
    model = model.double()
    hyperparameters = CONFIGS[config][1]
    optimizer = build(config, model.parameters())
    take_step(optimizer, model, x.double(), y.double())
    weights = sum(p.numel() for p in model.parameters())
    kept = sum(
        value.nbytes
        for state in optimizer.state.values()
        for key, value in state.items()
        if isinstance(value, torch.Tensor) and key != "step"
    )
    estimate = type(optimizer).memory_bytes(weights, dtype=torch.float64, **hyperparameters)
    assert kept <= estimate <= kept + 2 * weights * 8  # plus at most two temporaries


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_lowers_the_loss(device: str, config: str) -> None:
    model, x, y = separable_problem(device)
    optimizer = build(config, model.parameters())
    first = take_step(optimizer, model, x, y)
    for _ in range(80):
        last = take_step(optimizer, model, x, y)
    assert last < 0.5 * first


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_resume_from_state_dict_continues_bitwise(device: str, config: str) -> None:
    """Save mid-run through torch.save (as a checkpoint does), load into fresh objects, go on."""
    model, x, y = separable_problem(device)
    optimizer = build(config, model.parameters())
    for _ in range(7):
        take_step(optimizer, model, x, y)
    checkpoint = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, checkpoint)
    checkpoint.seek(0)

    torch.manual_seed(123)  # a different initialisation, all overwritten by the checkpoint
    resumed_model = MLP(10, (8,)).to(device)
    resumed = build(config, resumed_model.parameters(), lr=1.0)  # lr too comes from the checkpoint
    saved = torch.load(checkpoint, weights_only=True)
    resumed_model.load_state_dict(saved["model"])
    resumed.load_state_dict(saved["optimizer"])

    for _ in range(7):
        take_step(optimizer, model, x, y)
        take_step(resumed, resumed_model, x, y)
    for a, b in zip(model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(model.parameters(), resumed_model.parameters(), strict=True):
        state, resumed_state = optimizer.state[a], resumed.state[b]
        assert state.keys() == resumed_state.keys()
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(resumed_state[key])), key
            if key == "step":
                assert value == 14, key  # the step counter


@pytest.mark.parametrize("config", ["momentum-classic-corrected", "adam"])
def test_a_checkpoint_with_python_int_step_counts_still_resumes(config: str) -> None:
    """Checkpoints written before the step counts became tensors hold ints; they load as tensors
    and the run goes on exactly as if the count had been a tensor all along."""
    model, x, y = separable_problem("cpu")
    optimizer = build(config, model.parameters())
    for _ in range(5):
        take_step(optimizer, model, x, y)
    old_style = copy.deepcopy(optimizer.state_dict())
    for state in old_style["state"].values():
        state["step"] = int(state["step"])
    resumed_model = copy.deepcopy(model)
    resumed = build(config, resumed_model.parameters())
    resumed.load_state_dict(old_style)
    for _ in range(3):
        take_step(optimizer, model, x, y)
        take_step(resumed, resumed_model, x, y)
    for a, b in zip(model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert all(state["step"].item() == 8 for state in resumed.state.values())


@pytest.mark.parametrize("config", list(CONFIGS))
def test_params_without_grads_are_untouched(config: str) -> None:
    """A parameter the loss never uses keeps its value and gets no state; one whose grad is
    dropped mid-run stops moving (its momentum is not applied) and its step count pauses."""
    model, x, y = separable_problem("cpu")
    unused = torch.nn.Parameter(torch.randn(3))
    optimizer = build(config, [*model.parameters(), unused])
    unused_before = unused.detach().clone()
    for _ in range(3):
        take_step(optimizer, model, x, y)
    frozen = model.layers[0].bias
    frozen_state = copy.deepcopy(optimizer.state[frozen])

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        frozen.grad = None
        return loss

    for _ in range(3):
        frozen_before = frozen.detach().clone()
        step(optimizer, closure)
        assert torch.equal(frozen, frozen_before)
    assert torch.equal(unused, unused_before)
    assert not optimizer.state.get(unused)
    assert frozen_state.get("step") == optimizer.state[frozen].get("step")


def two_quadratics() -> tuple[torch.nn.Parameter, torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(6)
    return (
        torch.nn.Parameter(torch.randn(5, generator=generator)),
        torch.nn.Parameter(torch.randn(4, generator=generator)),
    )


def quadratic_closure(
    optimizer: torch.optim.Optimizer, a: torch.Tensor, b: torch.Tensor
) -> Callable[[], torch.Tensor]:
    """f = Σ(a - 1)² + ½Σ(b + 2)²: separate terms, so each parameter's path depends on it alone."""

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        a.grad, b.grad = None, None  # another optimizer may hold the other parameter
        loss = ((a - 1) ** 2).sum() + 0.5 * ((b + 2) ** 2).sum()
        loss.backward()
        return loss

    return closure


def quadratic_steps(
    optimizers: list[torch.optim.Optimizer], a: torch.Tensor, b: torch.Tensor
) -> None:
    for _ in range(10):
        for optimizer in optimizers:
            optimizer.step(quadratic_closure(optimizer, a, b))


@pytest.mark.parametrize("config", list(CONFIGS))
def test_param_groups_take_their_own_lr(config: str) -> None:
    """Two groups with different lr move exactly as two optimizers with one group each."""
    lr = CONFIGS[config][1]["lr"]
    a, b = two_quadratics()
    grouped = build(config, [{"params": [a]}, {"params": [b], "lr": lr / 10}])
    quadratic_steps([grouped], a, b)

    a_alone, b_alone = two_quadratics()
    separate = [build(config, [a_alone]), build(config, [b_alone], lr=lr / 10)]
    quadratic_steps(separate, a_alone, b_alone)
    assert torch.equal(a, a_alone)
    assert torch.equal(b, b_alone)
    assert not torch.equal(a, two_quadratics()[0])


@pytest.mark.parametrize("config", list(CONFIGS))
def test_one_group_may_mix_dtypes(config: str) -> None:
    """float32 and float64 parameters in one group (two foreach runs) move as each would alone."""
    a, b = two_quadratics()
    b = torch.nn.Parameter(b.detach().double())
    mixed = build(config, [a, b])
    quadratic_steps([mixed], a, b)

    a_alone, b_alone = two_quadratics()
    b_alone = torch.nn.Parameter(b_alone.detach().double())
    quadratic_steps([build(config, [a_alone]), build(config, [b_alone])], a_alone, b_alone)
    assert torch.equal(a, a_alone)
    assert torch.equal(b, b_alone)


@pytest.mark.parametrize("config", ["momentum-classic-corrected", "adam"])
def test_bias_correction_counts_steps_per_parameter(config: str) -> None:
    """A parameter that first gets a gradient at step 4 is corrected with its own t = 1, 2, …"""
    a, b = (p.double() for p in two_quadratics())
    a, b = torch.nn.Parameter(a.detach()), torch.nn.Parameter(b.detach())
    together = build(config, [a, b])
    b_alone = torch.nn.Parameter(b.detach().clone())
    alone = build(config, [b_alone])
    for count in range(1, 11):
        together.zero_grad()
        alone.zero_grad()
        loss = ((a - 1) ** 2).sum()
        if count > 3:
            loss = loss + 0.5 * ((b + 2) ** 2).sum()
            (0.5 * ((b_alone + 2) ** 2)).sum().backward()
            alone.step()
        loss.backward()
        together.step()
    assert together.state[a]["step"] == 10
    assert together.state[b]["step"] == alone.state[b_alone]["step"] == 7
    torch.testing.assert_close(b, b_alone, rtol=1e-14, atol=0)


def test_sparse_gradients_are_refused() -> None:
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="Adam does not support sparse gradients"):
        Adam(embedding.parameters(), lr=0.1).step()


BAD_HYPERPARAMETERS = [
    (SGD, {"lr": -0.1}, "Invalid learning rate: -0.1 (must be >= 0)"),
    (SGD, {"lr": float("nan")}, "Invalid learning rate: nan (must be >= 0)"),
    (SGD, {"lr": "fast"}, "Invalid learning rate: 'fast' (must be >= 0)"),
    (SGD, {"lr": 0.1, "weight_decay": -1e-4}, "Invalid weight_decay value: -0.0001 (must be >= 0)"),
    (Momentum, {"lr": 0.1, "beta": 1.5}, "Invalid beta value: 1.5 (must be in [0, 1))"),
    (Momentum, {"lr": 0.1, "beta": 1.0}, "Invalid beta value: 1.0 (must be in [0, 1))"),
    (
        Momentum,
        {"lr": 0.1, "formulation": "nag"},
        "Invalid formulation: 'nag' (must be 'ema' or 'classic')",
    ),
    (
        Momentum,
        {"lr": 0.1, "bias_correction": "yes"},
        "Invalid bias_correction: 'yes' (must be False or True)",
    ),
    (Nesterov, {"lr": 0.1, "beta": -0.1}, "Invalid beta value: -0.1 (must be in [0, 1))"),
    (Nesterov, {"lr": 0.1, "lookahead": 1}, "Invalid lookahead: 1 (must be False or True)"),
    (RMSprop, {"lr": 0.1, "eps": -1e-8}, "Invalid eps value: -1e-08 (must be >= 0)"),
    (RMSprop, {"lr": 0.1, "beta": 1}, "Invalid beta value: 1 (must be in [0, 1))"),
    (Adam, {"lr": 0.1, "betas": (0.9, 1.0)}, "Invalid beta2 value: 1.0 (must be in [0, 1))"),
    (Adam, {"lr": 0.1, "betas": (-0.9, 0.99)}, "Invalid beta1 value: -0.9 (must be in [0, 1))"),
    (Adam, {"lr": 0.1, "betas": 0.9}, "Invalid betas: 0.9 (must be a pair (beta1, beta2))"),
    (Adam, {"lr": 0.1, "eps": float("inf")}, "Invalid eps value: inf (must be >= 0)"),
    (
        SGD,
        {"lr": 0.1, "compile": "yes"},
        "Invalid compile: 'yes' (must be 'auto' or True or False)",
    ),
    (Adam, {"lr": 0.1, "compile": 1}, "Invalid compile: 1 (must be 'auto' or True or False)"),
]


@pytest.mark.parametrize(("cls", "hyperparameters", "message"), BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_are_named_in_the_error(
    cls: type[torch.optim.Optimizer], hyperparameters: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        cls([torch.zeros(2, requires_grad=True)], **hyperparameters)


def test_param_groups_are_validated_too() -> None:
    optimizer = Adam([torch.zeros(2, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match=re.escape("Invalid learning rate: -1")):
        optimizer.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "lr": -1})
    assert len(optimizer.param_groups) == 1


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamw'; choose one of \[.*'adam'"):
        build_optimizer("adamw", [torch.zeros(2, requires_grad=True)], lr=0.1)
