"""gradcheck: correct backprop agrees with finite differences, a wrong one is caught, and the
hand-written layers (ensemble members, member batch norm, whitening) have correct gradients."""

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from catdog.config import Config, validate
from catdog.gradcheck import (
    MAX_MEMBERS,
    MAX_WIDTH,
    ZERO_GRADIENT,
    LayerCheck,
    gradcheck,
    layer_lines,
    small_copy,
    small_problem,
)
from catdog.losses import LOSSES
from catdog.model import MLP, MemberBatchNorm, MemberLinear, Whitening


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


# --- the hand-written layers, each against central differences and torch's gradcheck ---------


class Probe(nn.Module):
    """`layer` applied to a fixed input `x` (a buffer, so its gradient is checked too), then a
    fixed nonlinear read-out to one logit per row: tanh, then a random projection."""

    def __init__(self, layer: nn.Module, x: Tensor, out_features: int) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("x", x)
        generator = torch.Generator().manual_seed(5)
        self.register_buffer("readout", torch.randn(out_features, generator=generator))

    def forward(self, _: Tensor) -> Tensor:
        out = torch.tanh(self.layer(self.x)) @ self.readout.to(self.x.dtype)
        return out.flatten()  # one logit per (member, row)


def probe_targets(model: Probe) -> Tensor:
    rows = model(model.x).numel()
    return torch.randint(0, 2, (rows,), generator=torch.Generator().manual_seed(6)).double()


def assert_gradients_agree(model: Probe, buffers: tuple[str, ...]) -> None:
    """Our gradcheck on every parameter and the named buffers, then torch's as a reference."""
    targets = probe_targets(model)
    checks = gradcheck(model, model.x, targets, bce, buffers=buffers)
    names = [check.name for check in checks]
    assert names == [name for name, _ in model.named_parameters()] + list(buffers)
    for check in checks:
        assert check.largest_gradient > 1e-4, check  # a real gradient, not rounding noise
        assert check.max_rel_error < 1e-6, check
    assert torch_reference_passes_on(model, targets, buffers)


def torch_reference_passes_on(model: Probe, targets: Tensor, buffers: tuple[str, ...]) -> bool:
    """torch.autograd.gradcheck of the loss as a function of the parameters and `buffers`."""
    params = dict(model.named_parameters())
    every = {**params, **{name: dict(model.named_buffers())[name] for name in buffers}}
    names = list(every)

    def loss_of(*tensors: Tensor) -> Tensor:
        state = dict(zip(names, tensors, strict=True))
        return bce(torch.func.functional_call(model, state, (model.x,)), targets)

    inputs = tuple(t.detach().clone().double().requires_grad_() for t in every.values())
    return torch.autograd.gradcheck(loss_of, inputs, eps=1e-6, atol=1e-8, raise_exception=False)


def test_member_linear_gradients() -> None:
    torch.manual_seed(10)
    layer = MemberLinear(3, 5, 4).double()
    x = torch.randn(3, 7, 5, dtype=torch.float64)  # (members, batch, in)
    assert_gradients_agree(Probe(layer, x, 4), buffers=("x",))


def test_member_batch_norm_gradients_in_training_mode() -> None:
    torch.manual_seed(11)
    layer = MemberBatchNorm(3, 4).double().train()
    with torch.no_grad():  # away from gamma = 1, beta = 0, so every term of the backward counts
        layer.norm.weight.uniform_(0.5, 1.5)
        layer.norm.bias.uniform_(-0.5, 0.5)
    x = 2.0 + 3.0 * torch.randn(3, 6, 4, dtype=torch.float64)  # (members, batch, features)
    model = Probe(layer, x, 4)
    assert_gradients_agree(model, buffers=("x",))
    # Training mode: the batch's own statistics, so the gradient reaches x through them too.
    assert model.layer.training and model.layer.norm.training


def test_member_batch_norm_keeps_members_apart_in_its_gradient() -> None:
    # Each member normalises over its own rows: member 0's output can't depend on member 1's x.
    layer = MemberBatchNorm(2, 3).double().train()
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(layer(x)[0].pow(3).sum(), x)
    assert grad[0].abs().max() > 1e-3
    assert torch.equal(grad[1], torch.zeros_like(grad[1]))


def test_whitening_gradients() -> None:
    torch.manual_seed(12)
    layer = Whitening(6).double()
    matrix = torch.randn(6, 6, dtype=torch.float64)
    layer.set(torch.randn(6, dtype=torch.float64), matrix @ matrix.T / 6 + torch.eye(6))
    x = torch.randn(9, 6, dtype=torch.float64)
    assert_gradients_agree(Probe(layer, x, 6), buffers=("layer.mean", "layer.matrix", "x"))


# --- the small copy of a config's network --------------------------------------------------

FULL = {
    "data": {"normalization": "zca", "grayscale": True, "image_size": 16},
    "model": {
        "hidden": [512, 6],
        "batch_norm": True,
        "ensemble": 4,
        "dropout": 0.2,
        "input_dropout": 0.1,
    },
    "loss": "bce",
}


def test_small_copy_keeps_every_layer_of_the_config() -> None:
    problem = small_copy(validate(FULL), seed=3)
    model = problem.model

    # Written out by hand from FULL, in the order the forward pass runs them.
    kinds = [
        (nn.Dropout, 0.1),
        (MemberLinear, (MAX_MEMBERS, 36, MAX_WIDTH)),
        (MemberBatchNorm, None),
        (nn.ReLU, None),
        (nn.Dropout, 0.2),
        (MemberLinear, (MAX_MEMBERS, MAX_WIDTH, 6)),
        (MemberBatchNorm, None),
        (nn.ReLU, None),
        (nn.Dropout, 0.2),
        (MemberLinear, (MAX_MEMBERS, 6, 1)),
    ]
    assert [type(layer) for layer in model.layers] == [kind for kind, _ in kinds]
    for layer, (_, detail) in zip(model.layers, kinds, strict=True):
        if isinstance(layer, nn.Dropout):
            assert layer.p == detail
        if isinstance(layer, MemberLinear):
            assert tuple(layer.weight.shape) == detail
    assert isinstance(model.whitening, Whitening)
    # Whitened with a real ZCA map of the copy's photos, not left at the identity.
    assert not torch.equal(model.whitening.matrix, torch.eye(36, dtype=torch.float64))
    assert problem.buffers == ("whitening.mean", "whitening.matrix")
    assert model.training and all(p.dtype == torch.float64 for p in model.parameters())
    assert problem.inputs.shape == (16, 36) and problem.inputs.dtype == torch.float64
    assert model(problem.inputs).shape == (16, MAX_MEMBERS)


def test_small_copy_of_a_config_passes_and_lists_every_layer() -> None:
    problem = small_copy(validate(FULL), seed=0)
    model = problem.model
    loss_fn = LOSSES["bce"]  # the product's: the labels apply to every member
    checks = gradcheck(model, problem.inputs, problem.targets, loss_fn, buffers=problem.buffers)

    checked = [name for name, _ in model.named_parameters()] + list(problem.buffers)
    assert [check.name for check in checks] == checked
    # The biases just before batch norm have a true gradient of 0: judged by absolute error.
    before_batch_norm = {"layers.1.bias", "layers.5.bias"}
    assert {check.name for check in checks if check.zero_gradient} == before_batch_norm
    assert all(check.passes(1e-6) for check in checks)
    assert all(check.max_rel_error < 1e-6 for check in checks if not check.zero_gradient)

    lines = layer_lines(model, checked)
    named = ["whitening"] + [f"layers.{i}" for i in range(len(model.layers))]
    assert [line.split()[0] for line in lines] == named
    dropouts = [line for line in lines if "Dropout" in line]
    assert len(dropouts) == 3
    assert all("not checked: dropout (random)" in line for line in dropouts)
    assert "checked: mean, matrix" in lines[0]
    for line in lines:
        if "MemberLinear" in line:
            assert line.endswith("checked: weight, bias")
        if "MemberBatchNorm" in line:
            assert "training mode" in line and line.endswith("checked: norm.weight, norm.bias")


def test_a_layer_unknown_to_the_report_still_gets_a_line() -> None:
    model = MLP(4, hidden=(3,))
    model.layers.insert(1, nn.Tanh())
    lines = layer_lines(model, [name for name, _ in model.named_parameters()])
    assert len(lines) == len(model.layers)
    assert lines[1].split()[:2] == ["layers.1", "Tanh"]


def test_a_zero_gradient_is_judged_by_its_absolute_error() -> None:
    def check(largest: float, absolute: float) -> LayerCheck:
        relative = absolute / largest
        return LayerCheck("w", 1, absolute, relative, largest, 0.0, 0.0)

    assert check(largest=1e-11, absolute=1e-11).passes(1e-6)  # relative error 1: noise
    assert not check(largest=1e-11, absolute=2 * ZERO_GRADIENT).passes(1e-6)
    assert not check(largest=1.0, absolute=1e-3).passes(1e-6)
    assert check(largest=1.0, absolute=1e-9).passes(1e-6)
    assert not check(largest=1.0, absolute=float("nan")).passes(1e-6)


def test_the_default_config_copy_is_the_plain_network() -> None:
    problem = small_copy(Config(), seed=0)
    assert [type(layer) for layer in problem.model.layers] == [
        nn.Linear,
        nn.ReLU,
        nn.Linear,
        nn.ReLU,
        nn.Linear,
    ]
    assert problem.model.whitening is None and problem.buffers == ()


def test_runs_in_one_thread_and_gives_the_callers_threads_back() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    seen: list[int] = []

    def loss_fn(logits: Tensor, targets: Tensor) -> Tensor:
        seen.append(torch.get_num_threads())
        return mse(logits, targets)

    model, inputs, targets = small_problem(0, hidden=(2,), batch=4)
    try:
        gradcheck(model, inputs, targets, loss_fn)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert set(seen) == {1}
