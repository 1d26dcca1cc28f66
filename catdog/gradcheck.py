"""Backpropagation checked against finite differences, layer by layer.

For every element w of every parameter the central difference

    g_fd = (L(w + eps) - L(w - eps)) / (2 eps)

approximates dL/dw with truncation error O(eps^2) and rounding error about
u |L| / eps (u = 2^-53 in float64), so with eps = 1e-6 it agrees with a correct
backprop gradient g_bp to about 1e-10 in absolute terms. Each layer reports

    max_abs_error = max_i |g_bp_i - g_fd_i|
    max_rel_error = max_abs_error / max(max_i |g_bp_i|, max_i |g_fd_i|, tiny)

i.e. the error relative to the layer's largest gradient (infinity norms). An element-wise
ratio would be dominated by the rounding error of the difference quotient wherever a
gradient happens to be near zero (1e-10 / 1e-5 = 1e-5), flagging correct code; a wrong
backward pass shows up on the large elements. `tiny` only keeps 0/0 at 0. Where the true
gradient is zero (a bias just before batch norm) both estimates are rounding noise and
the relative error is meaningless (about 1); read max_abs_error there.

Finite differences cost two forward passes per weight, backprop one forward and one
backward pass for all of them: the timings make that visible.
"""

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from catdog.model import MLP

LossFn = Callable[[Tensor, Tensor], Tensor]

_TINY = torch.finfo(torch.float64).tiny
_RNG_SEED = 0  # every loss evaluation reseeds, so dropout draws the same mask each time


@dataclass
class LayerCheck:
    """The comparison for one named parameter (`count` elements).

    backprop_seconds: one forward pass and the backward pass to this parameter.
    finite_difference_seconds: the 2 * count forward passes of the central differences.
    """

    name: str
    count: int
    max_abs_error: float
    max_rel_error: float
    backprop_seconds: float
    finite_difference_seconds: float


def gradcheck(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss_fn: LossFn,
    eps: float = 1e-6,
) -> list[LayerCheck]:
    """Compare backprop with central differences on every element of every parameter.

    Works on a float64 copy of `model`, in the model's current train/eval mode, so the
    caller's weights and buffers (e.g. batch-norm running statistics) stay exactly as they
    were. `loss_fn(model(inputs), targets)` must return a scalar.
    """
    twin = copy.deepcopy(model).to(torch.float64).requires_grad_(True)  # frozen layers too
    inputs = inputs.to(torch.float64)
    targets = targets.to(torch.float64)

    cuda_devices = [inputs.device] if inputs.is_cuda else []  # whose RNG dropout draws from

    def loss() -> Tensor:
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(_RNG_SEED)
            return loss_fn(twin(inputs), targets)

    # Warm-up: the timings should not include first-call costs.
    torch.autograd.grad(loss(), list(twin.parameters()), allow_unused=True)
    checks = []
    for name, param in twin.named_parameters():
        start = time.perf_counter()
        (backprop,) = torch.autograd.grad(loss(), param, allow_unused=True, materialize_grads=True)
        backprop_seconds = time.perf_counter() - start

        start = time.perf_counter()
        finite_difference = _central_differences(loss, param, eps)
        finite_difference_seconds = time.perf_counter() - start

        max_abs_error = (backprop - finite_difference).abs().max().item()
        scale = max(backprop.abs().max().item(), finite_difference.abs().max().item(), _TINY)
        checks.append(
            LayerCheck(
                name=name,
                count=param.numel(),
                max_abs_error=max_abs_error,
                max_rel_error=max_abs_error / scale,
                backprop_seconds=backprop_seconds,
                finite_difference_seconds=finite_difference_seconds,
            )
        )
    return checks


@torch.no_grad()
def _central_differences(loss: Callable[[], Tensor], param: Tensor, eps: float) -> Tensor:
    """(L(w + eps) - L(w - eps)) / 2eps for each element w of `param`, in place then restored."""
    flat = param.view(-1)
    estimate = torch.empty_like(flat)
    for i in range(flat.numel()):
        original = flat[i].item()
        flat[i] = original + eps
        plus = loss().item()
        flat[i] = original - eps
        minus = loss().item()
        # The saved value rather than (w - eps) + eps, so the weight comes back bit for bit.
        flat[i] = original
        estimate[i] = (plus - minus) / (2 * eps)
    return estimate.view_as(param)


def small_problem(
    seed: int,
    image_size: int = 6,
    channels: int = 1,
    hidden: tuple[int, ...] = (8, 4),
    batch: int = 16,
) -> tuple[MLP, Tensor, Tensor]:
    """A tiny float64 MLP, random photos (batch, channels, size, size) and 0/1 labels.

    Built from `seed` alone; the global torch RNG is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLP(channels * image_size * image_size, hidden=hidden).to(torch.float64)
        inputs = torch.randn(batch, channels, image_size, image_size, dtype=torch.float64)
        targets = torch.randint(0, 2, (batch,)).to(torch.float64)
    return model, inputs, targets
