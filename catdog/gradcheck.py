"""`catdog gradcheck`: backpropagation against finite differences on a small float64 copy of a
config's network, tensor by tensor, and the command's report.

For every element w of every checked tensor the central difference

    g_fd = (L(w + eps) - L(w - eps)) / (2 eps)

approximates dL/dw with truncation error O(eps^2) and rounding error about
u |L| / eps (u = 2^-53 in float64), so with eps = 1e-6 it agrees with a correct
backprop gradient g_bp to about 1e-10 in absolute terms. Each tensor reports

    max_abs_error = max_i |g_bp_i - g_fd_i|
    max_rel_error = max_abs_error / max(max_i |g_bp_i|, max_i |g_fd_i|, tiny)

i.e. the error relative to the tensor's largest gradient (infinity norms). An element-wise
ratio would be dominated by the rounding error of the difference quotient wherever a
gradient happens to be near zero (1e-10 / 1e-5 = 1e-5), flagging correct code; a wrong
backward pass shows up on the large elements. `tiny` only keeps 0/0 at 0. Where the true
gradient is zero (a bias just before batch norm) both estimates are rounding noise and
the relative error is meaningless (about 1): the report judges such a tensor by its
absolute error instead (`ZERO_GRADIENT`).

The copy has the config's layers in the config's order (input dropout, whitening, ensemble
members, batch norm in training mode, ReLU, dropout), built by the product's own `build_model`,
with hidden layers capped at `MAX_WIDTH` units and ensembles at `MAX_MEMBERS` members: finite
differences cost two forward passes per weight. Its inputs are `BATCH` random `IMAGE_SIZE`²
photos with the config's channels, normalised (and whitened, fitted on them) as training does.
The whitening's mean and matrix are fixed in training, but checked here as if they were
weights, which exercises the layer's backward. Dropout draws a fresh random mask every step,
which finite differences can't follow: every loss evaluation reseeds, so all of them see one
mask and the layers around a dropout are checked through it, and the report says that dropout
itself is not checked. Every layer of the copy gets a line in the report.
"""

import copy
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from catdog.batches import channel_stats, to_inputs, zca_whitening
from catdog.builders import build_model
from catdog.config import Config, load_config
from catdog.losses import LOSSES
from catdog.model import MLP, MemberBatchNorm, MemberLinear, Whitening

LossFn = Callable[[Tensor, Tensor], Tensor]

MAX_WIDTH = 8
MAX_MEMBERS = 2  # two members are enough to see that each keeps to its own weights
IMAGE_SIZE = 6
BATCH = 16
ZERO_GRADIENT = 1e-8
"""A tensor whose largest gradient (either estimate) is below this has a zero gradient to
within the difference quotient's rounding (~1e-10 for a loss of order 1): it passes when its
absolute error is below this too."""

_TINY = torch.finfo(torch.float64).tiny
_RNG_SEED = 0  # every loss evaluation reseeds, so dropout draws the same mask each time


@dataclass
class LayerCheck:
    """The comparison for one named tensor (`count` elements).

    largest_gradient: max_i max(|g_bp_i|, |g_fd_i|), the scale of `max_rel_error`.
    backprop_seconds: one forward pass and the backward pass to this tensor.
    finite_difference_seconds: the 2 * count forward passes of the central differences.
    """

    name: str
    count: int
    max_abs_error: float
    max_rel_error: float
    largest_gradient: float
    backprop_seconds: float
    finite_difference_seconds: float

    @property
    def zero_gradient(self) -> bool:
        return self.largest_gradient < ZERO_GRADIENT

    def passes(self, tolerance: float) -> bool:
        # `not error <= tolerance` also fails a NaN error.
        if self.zero_gradient:
            return self.max_abs_error <= ZERO_GRADIENT
        return self.max_rel_error <= tolerance


def gradcheck(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss_fn: LossFn,
    eps: float = 1e-6,
    buffers: Sequence[str] = (),
) -> list[LayerCheck]:
    """Compare backprop with central differences on every element of every parameter, then of
    the named `buffers` (fixed tensors the forward pass reads, checked as if they were weights).

    Works on a float64 copy of `model`, in the model's current train/eval mode, so the
    caller's weights and buffers (e.g. batch-norm running statistics) stay exactly as they
    were. `loss_fn(model(inputs), targets)` must return a scalar.
    """
    twin = copy.deepcopy(model).to(torch.float64).requires_grad_(True)  # frozen layers too
    named_buffers = dict(twin.named_buffers())
    tensors = [*twin.named_parameters(), *((name, named_buffers[name]) for name in buffers)]
    for _, tensor in tensors:
        tensor.requires_grad_(True)
    inputs = inputs.to(torch.float64)
    targets = targets.to(torch.float64)

    cuda = inputs.device if inputs.is_cuda else None  # whose RNG dropout draws from too

    # Forked once, so the caller's random streams come back untouched; inside, every loss
    # evaluation restarts the streams from one state (cheaper than reseeding each time).
    with torch.random.fork_rng(devices=[cuda] if cuda is not None else []), _one_thread():
        torch.manual_seed(_RNG_SEED)
        cpu_state = torch.get_rng_state()
        cuda_state = torch.cuda.get_rng_state(cuda) if cuda is not None else None

        def loss() -> Tensor:
            torch.default_generator.set_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state(cuda_state, cuda)
            return loss_fn(twin(inputs), targets)

        # Warm-up: the timings should not include first-call costs.
        torch.autograd.grad(loss(), [tensor for _, tensor in tensors], allow_unused=True)
        return [_check(name, tensor, loss, eps) for name, tensor in tensors]


@contextmanager
def _one_thread() -> Iterator[None]:
    """Tiny tensors, thousands of passes: more threads only wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _check(name: str, tensor: Tensor, loss: Callable[[], Tensor], eps: float) -> LayerCheck:
    start = time.perf_counter()
    (backprop,) = torch.autograd.grad(loss(), tensor, allow_unused=True, materialize_grads=True)
    backprop_seconds = time.perf_counter() - start

    start = time.perf_counter()
    finite_difference = _central_differences(loss, tensor, eps)
    finite_difference_seconds = time.perf_counter() - start

    max_abs_error = (backprop - finite_difference).abs().max().item()
    largest = max(backprop.abs().max().item(), finite_difference.abs().max().item())
    return LayerCheck(
        name=name,
        count=tensor.numel(),
        max_abs_error=max_abs_error,
        max_rel_error=max_abs_error / max(largest, _TINY),
        largest_gradient=largest,
        backprop_seconds=backprop_seconds,
        finite_difference_seconds=finite_difference_seconds,
    )


@torch.no_grad()
def _central_differences(loss: Callable[[], Tensor], tensor: Tensor, eps: float) -> Tensor:
    """(L(w + eps) - L(w - eps)) / 2eps for each element w of `tensor`, in place then restored."""
    flat = tensor.view(-1)
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
    return estimate.view_as(tensor)


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


@dataclass
class Problem:
    """A small float64 copy of a config's network, its inputs and labels, and what to check."""

    config: Config
    """The config the copy was built from: hidden widths, members and photo size shrunk."""
    model: MLP
    inputs: Tensor
    targets: Tensor
    buffers: tuple[str, ...]


def small_copy(config: Config, seed: int = 0) -> Problem:
    """The config's network shrunk (see the module docstring), with random photos from `seed`.

    The global torch RNG is left untouched.
    """
    m = config.model
    small = config.model_copy(
        update={
            "model": m.model_copy(
                update={
                    "hidden": [min(width, MAX_WIDTH) for width in m.hidden],
                    "ensemble": min(m.ensemble, MAX_MEMBERS),
                }
            ),
            "data": config.data.model_copy(update={"image_size": IMAGE_SIZE}),
        }
    )
    channels = small.data.in_features // IMAGE_SIZE**2  # the one formula, DataConfig's
    shape = (BATCH, channels, IMAGE_SIZE, IMAGE_SIZE)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    labels = torch.from_numpy(rng.integers(0, 2, size=BATCH)).to(torch.float64)
    rows = np.arange(BATCH)
    mean, std = channel_stats(pixels, rows)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(small)
    buffers: tuple[str, ...] = ()
    if model.whitening is not None:
        zca_mean, matrix = zca_whitening(pixels, rows, mean, std, small.data.zca_epsilon)
        model.whitening.set(torch.from_numpy(zca_mean), torch.from_numpy(matrix))
        buffers = ("whitening.mean", "whitening.matrix")
    inputs = to_inputs(pixels, mean, std).to(torch.float64)
    return Problem(small, model.to(torch.float64).train(), inputs, labels, buffers)


def report(config_path: Path | None, tolerance: float, seed: int = 0) -> tuple[list[str], bool]:
    """The report's lines, and whether every checked tensor is within `tolerance`."""
    config = load_config(config_path) if config_path is not None else Config()
    problem = small_copy(config, seed)
    model = problem.model
    checks = gradcheck(
        model, problem.inputs, problem.targets, LOSSES[config.loss], buffers=problem.buffers
    )
    widths = " → ".join(str(w) for w in (problem.inputs.shape[1], *problem.config.model.hidden, 1))
    members = model.members
    lines = [
        f"gradcheck: network {widths}"
        + (f" × {members} members" if members > 1 else "")
        + f", {config.loss} loss, {BATCH} random {IMAGE_SIZE}x{IMAGE_SIZE} photos, float64, "
        "central differences",
        "layers:",
        *layer_lines(model, [check.name for check in checks]),
        "",
        *table(checks),
    ]
    zero = [check.name for check in checks if check.zero_gradient]
    if zero:
        lines.append(
            f"zero gradient, judged by absolute error <= {ZERO_GRADIENT:g}: {', '.join(zero)}"
        )
    failed = [check for check in checks if not check.passes(tolerance)]
    passed = not failed
    judged = failed or [check for check in checks if not check.zero_gradient] or checks
    worst = max(judged, key=lambda check: check.max_rel_error)
    verdict, relation = ("passed", "<=") if passed else ("FAILED", ">")
    lines.append(
        f"{verdict}: largest relative error {worst.max_rel_error:.2e} ({worst.name}) {relation} "
        f"tolerance {tolerance:g}"
    )
    return lines, passed


def layer_lines(model: MLP, checked: Sequence[str]) -> list[str]:
    """One line per layer of `model`, in the order the forward pass runs them: what it is and
    how it is checked. Nothing is left out: a layer of a kind not known here still gets a line."""
    named = [("whitening", model.whitening)] if model.whitening is not None else []
    named += [(f"layers.{i}", layer) for i, layer in enumerate(model.layers)]
    rows = [
        (name, describe(layer, model.members), _verdict(name, layer, checked))
        for name, layer in named
    ]
    name_width = max(len(name) for name, _, _ in rows)
    kind_width = max(len(kind) for _, kind, _ in rows)
    return [f"  {name:<{name_width}}  {kind:<{kind_width}}  {how}" for name, kind, how in rows]


def describe(layer: nn.Module, members: int = 1) -> str:
    """What a layer of a network of `members` members computes, in a few words."""
    if isinstance(layer, Whitening):
        return f"Whitening ({len(layer.mean)} features, fixed)"
    if isinstance(layer, MemberLinear):
        members, width_in, width_out = layer.weight.shape
        return f"MemberLinear ({members} × {width_in} → {width_out})"
    if isinstance(layer, MemberBatchNorm):
        features = layer.norm.num_features // members
        return f"MemberBatchNorm ({members} × {features}, {_mode(layer)} mode)"
    if isinstance(layer, nn.Linear):
        return f"Linear ({layer.in_features} → {layer.out_features})"
    if isinstance(layer, nn.BatchNorm1d):
        return f"BatchNorm1d ({layer.num_features}, {_mode(layer)} mode)"
    if isinstance(layer, nn.Dropout):
        return f"Dropout (p={layer.p:g})"
    return type(layer).__name__


def _verdict(name: str, layer: nn.Module, checked: Sequence[str]) -> str:
    if isinstance(layer, nn.Dropout):
        return "not checked: dropout (random); every evaluation draws one mask, checked through it"
    own = [tensor[len(name) + 1 :] for tensor in checked if tensor.startswith(f"{name}.")]
    if own:
        return "checked: " + ", ".join(own)
    if isinstance(layer, nn.ReLU):
        return "no weights; its gradient is checked through the layers before it"
    if next(layer.parameters(), None) is None:
        return f"no weights; {type(layer).__name__} is checked through the layers before it"
    return "not checked: its weights are not in the table"


def _mode(layer: nn.Module) -> str:
    return "training" if layer.training else "eval"


def table(checks: list[LayerCheck]) -> list[str]:
    """One aligned line per tensor: its size, errors and the time each method took."""
    name_width = max(len("tensor"), *(len(check.name) for check in checks))
    header = (
        f"{'tensor':<{name_width}}  {'weights':>7}  {'max abs error':>13}  {'max rel error':>13}"
        f"  {'backprop':>10}  {'finite diff':>11}"
    )
    lines = [header]
    for check in checks:
        lines.append(
            f"{check.name:<{name_width}}  {check.count:>7}  {check.max_abs_error:>13.2e}"
            f"  {check.max_rel_error:>13.2e}  {check.backprop_seconds * 1e3:>7.2f} ms"
            f"  {check.finite_difference_seconds * 1e3:>8.1f} ms"
            + ("  zero gradient" if check.zero_gradient else "")
        )
    return lines
