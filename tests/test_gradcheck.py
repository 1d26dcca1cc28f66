"""gradcheck: correct backprop agrees with finite differences, a wrong one is caught."""

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from catdog.gradcheck import LayerCheck, gradcheck, small_problem
from catdog.model import MLP
from tests.optim_helpers import one_thread  # noqa: F401


def mse(logits: Tensor, targets: Tensor) -> Tensor:
    """The article's loss: mean((sigmoid(z) - y)^2)."""
    return ((torch.sigmoid(logits) - targets) ** 2).mean()


def bce(logits: Tensor, targets: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets)


class ScaledBackward(torch.autograd.Function):
    """Identity forward, but backward multiplies the gradient by 1.5: a planted bug."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        return 1.5 * grad


class BuggyMLP(nn.Module):
    """36 → 8 → 4 → 1 with the bug between the first and second layer."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(36, 8)
        self.second = nn.Linear(8, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, x: Tensor) -> Tensor:
        hidden = ScaledBackward.apply(torch.relu(self.first(x.flatten(1))))
        return self.out(torch.relu(self.second(hidden))).squeeze(-1)


def buggy_problem(seed: int) -> tuple[BuggyMLP, Tensor, Tensor]:
    _, inputs, targets = small_problem(seed)
    torch.manual_seed(seed)
    return BuggyMLP().to(torch.float64), inputs, targets


def torch_reference_passes(model: nn.Module, inputs: Tensor, targets: Tensor, loss_fn) -> bool:
    """torch.autograd.gradcheck's verdict on the loss as a function of all parameters."""
    names = [name for name, _ in model.named_parameters()]

    def loss_of(*params: Tensor) -> Tensor:
        logits = torch.func.functional_call(model, dict(zip(names, params, strict=True)), (inputs,))
        return loss_fn(logits, targets)

    params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    return torch.autograd.gradcheck(loss_of, params, eps=1e-6, atol=1e-8, raise_exception=False)


@pytest.mark.parametrize("loss_fn", [mse, bce], ids=["mse", "bce"])
@pytest.mark.parametrize("seed", [0, 1])
def test_correct_model_agrees_with_finite_differences(loss_fn, seed: int) -> None:
    model, inputs, targets = small_problem(seed)
    checks = gradcheck(model, inputs, targets, loss_fn)

    assert [(c.name, c.count) for c in checks] == [
        (name, p.numel()) for name, p in model.named_parameters()
    ]
    for check in checks:
        assert check.max_rel_error < 1e-6, check
        assert check.max_abs_error < 1e-8, check
        assert check.backprop_seconds > 0 and check.finite_difference_seconds > 0
    assert torch_reference_passes(model, inputs, targets, loss_fn)


@pytest.mark.parametrize("loss_fn", [mse, bce], ids=["mse", "bce"])
def test_scaled_backward_is_caught(loss_fn) -> None:
    model, inputs, targets = buggy_problem(seed=3)
    errors = {c.name: c.max_rel_error for c in gradcheck(model, inputs, targets, loss_fn)}

    # Upstream of the bug backprop is exactly 1.5x the true gradient: |1.5g - g| / |1.5g| = 1/3.
    for name in ("first.weight", "first.bias"):
        assert errors[name] == pytest.approx(1 / 3, abs=1e-6)
    # Downstream the gradient does not pass through the bug.
    for name in ("second.weight", "second.bias", "out.weight", "out.bias"):
        assert errors[name] < 1e-6
    assert not torch_reference_passes(model, inputs, targets, loss_fn)


def test_model_is_left_exactly_as_it_was() -> None:
    torch.manual_seed(0)
    model = MLP(36, hidden=(8, 4), batch_norm=True)  # float32, with running statistics
    model.train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    _, inputs, targets = small_problem(0)

    checks = gradcheck(model, inputs.float(), targets.float(), mse)

    # Checked in float64 all the same, so as precise as a float64 model (but the biases
    # before batch norm, whose true gradient is 0: see the next test).
    assert checks[0].max_rel_error < 1e-6 and checks[0].name == "layers.0.weight"

    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert after[key].dtype == value.dtype, key
        assert torch.equal(after[key], value), key
    assert all(p.grad is None for p in model.parameters())
    assert model.training


def test_stochastic_layers_see_the_same_mask_in_every_evaluation() -> None:
    # Dropout and batch norm in train mode: valid only because each loss evaluation reseeds.
    torch.manual_seed(1)
    model = MLP(36, hidden=(8, 4), dropout=0.3, batch_norm=True).to(torch.float64).train()
    _, inputs, targets = small_problem(1)
    rng_before = torch.get_rng_state()

    checks = {c.name: c for c in gradcheck(model, inputs, targets, bce)}

    assert torch.equal(torch.get_rng_state(), rng_before)
    # Batch norm subtracts the batch mean, so the biases just before it have a true gradient
    # of 0: both estimates are rounding noise and only the absolute error means anything.
    before_batch_norm = {"layers.0.bias", "layers.4.bias"}
    for name in before_batch_norm:
        assert checks[name].max_abs_error < 1e-12
    for name, check in checks.items():
        if name not in before_batch_norm:
            assert check.max_rel_error < 1e-6, check


def test_small_problem_is_built_from_the_seed_alone() -> None:
    rng_before = torch.get_rng_state()
    shape = {"image_size": 5, "channels": 3, "hidden": (6,), "batch": 10}
    model, inputs, targets = small_problem(7, **shape)
    assert torch.equal(torch.get_rng_state(), rng_before)

    assert inputs.shape == (10, 3, 5, 5) and inputs.dtype == torch.float64
    assert targets.shape == (10,) and set(targets.tolist()) <= {0.0, 1.0}
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert model(inputs).shape == (10,)

    torch.manual_seed(123)  # the global RNG must not matter
    again, inputs_again, targets_again = small_problem(
        7, image_size=5, channels=3, hidden=(6,), batch=10
    )
    assert torch.equal(inputs, inputs_again) and torch.equal(targets, targets_again)
    for p, q in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)
    _, other_inputs, _ = small_problem(8, **shape)
    assert not torch.equal(inputs, other_inputs)


def test_frozen_and_unused_parameters_are_checked_too() -> None:
    model, inputs, targets = small_problem(4)
    model.layers[0].requires_grad_(False)
    model.register_parameter("unused", nn.Parameter(torch.ones(3, dtype=torch.float64)))

    checks = {c.name: c for c in gradcheck(model, inputs, targets, mse)}

    assert checks["layers.0.weight"].max_rel_error < 1e-6
    assert checks["unused"].max_abs_error == 0.0 and checks["unused"].max_rel_error == 0.0
    assert not model.layers[0].weight.requires_grad


def test_layer_check_fields() -> None:
    model, inputs, targets = small_problem(0, hidden=(3,), batch=4)
    checks = gradcheck(model, inputs, targets, mse)
    assert all(isinstance(c, LayerCheck) for c in checks)
    assert sum(c.count for c in checks) == sum(p.numel() for p in model.parameters())
