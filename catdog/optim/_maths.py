r"""The article's equations, each written once and shared by the optimizers and `ewa`.

Each works in place over a list of tensors with `torch._foreach_*` kernels (one launch for the
whole list), in the manner of optax's `update_moment` and `bias_correction`:

- coupled weight decay       :math:`g + \lambda w`                              `with_weight_decay`
- the EMA (a moment)         :math:`m \leftarrow \beta m + (1-\beta)\, x^k`     `update_moment_`
- the heavy-ball velocity    :math:`v \leftarrow \beta v + g`                   `update_velocity_`
- the step count             :math:`t \leftarrow t + 1`                         `count_steps`
- bias correction            :math:`1 - \beta^t`                                `bias_correction`
- the descent step           :math:`w \leftarrow w - \eta\, d`                  `descend_`
- the step scaled by the RMS :math:`w \leftarrow w - \eta\, d/(\sqrt s + \epsilon)`  `descend_rms_`

The lists must share one device and dtype (`_foreach.split_by_device_and_dtype` cuts them).

A value that changes from step to step (the learning rate under a schedule, a bias correction's
step count t) is a `Scalar`: a Python number on the eager path, where foreach kernels take it as
an argument, or a 0-d tensor on the compiled path, so that torch.compile traces it as an input
instead of recompiling for each new value. Which one is decided by type, never by value.
"""

from collections.abc import Sequence

import torch
from torch import Tensor

Scalar = float | Tensor
"""A Python number (eager) or a 0-d tensor (compiled)."""


def with_weight_decay(
    grads: list[Tensor], params: list[Tensor], weight_decay: float
) -> list[Tensor]:
    r"""Coupled weight decay :math:`g + \lambda w`, as torch does it.

    The gradient of :math:`\tfrac\lambda2\|w\|^2` is added to the loss's, in new tensors so
    `.grad` stays untouched; with :math:`\lambda = 0` the grads themselves come back.
    """
    if weight_decay == 0:
        return grads
    return torch._foreach_add(grads, params, alpha=weight_decay)


def update_moment_(
    moments: list[Tensor], values: list[Tensor], beta: float, order: int = 1
) -> None:
    r"""The exponentially weighted average :math:`m \leftarrow \beta m + (1-\beta)\, x^k`, in place.

    k is `order`. Order 1 runs as :math:`m + (1-\beta)(x - m)`, one pass over memory (a lerp);
    order 2 (the mean square of RMSprop and Adam) as :math:`\beta m + (1-\beta)\,x \cdot x`, two
    passes with no :math:`x^2` temporary, op for op as torch's RMSprop and Adam write it.
    """
    if order == 1:
        torch._foreach_lerp_(moments, values, 1 - beta)
    elif order == 2:
        torch._foreach_mul_(moments, beta)
        torch._foreach_addcmul_(moments, values, values, value=1 - beta)
    else:
        raise ValueError(f"Invalid order: {order!r} (must be 1 or 2)")


def update_velocity_(velocities: list[Tensor], grads: list[Tensor], beta: float) -> None:
    r"""Classic (heavy-ball) momentum's velocity :math:`v \leftarrow \beta v + g`, in place.

    Op for op as torch's `SGD(momentum=β)`.
    """
    torch._foreach_mul_(velocities, beta)
    torch._foreach_add_(velocities, grads)


def count_steps(steps: list[Tensor]) -> list[Scalar]:
    r"""Count each parameter's step one more, :math:`t \leftarrow t + 1`, in place; return the
    new step numbers as `Scalar`\ s.

    `steps` are the float64 0-d tensors of the optimizer's state. Compiled, the count is part of
    the one fused step and the tensors themselves come back, traced as inputs; eagerly, their
    values come back as Python numbers, which the foreach kernels take directly.
    """
    torch._foreach_add_(steps, 1)
    if _compiling():
        return list(steps)
    return [step.item() for step in steps]


def _compiling() -> bool:
    is_compiling = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    return bool(is_compiling and is_compiling())


def bias_correction(beta: float, step: Scalar) -> Scalar:
    r""":math:`1 - \beta^t`: the weights of an EMA started at zero sum to this after t steps.

    Dividing by it makes them sum to 1. A tensor t gives a float64 0-d tensor.
    """
    if isinstance(step, Tensor):
        step = step.to(torch.float64)
    return 1 - beta**step


def descend_(
    params: list[Tensor], directions: list[Tensor], step_sizes: Scalar | Sequence[Scalar]
) -> None:
    r""":math:`w_i \leftarrow w_i - \eta_i\, d_i`: one step size for all, or one per parameter.

    Per-parameter sizes differ only where bias correction counts a parameter's own steps (one that
    joined the model later has taken fewer); equal Python numbers take one pass.
    """
    if isinstance(step_sizes, float | int):
        torch._foreach_add_(params, directions, alpha=-step_sizes)
    elif _all_equal_numbers(step_sizes):
        torch._foreach_add_(params, directions, alpha=-step_sizes[0])  # type: ignore[index]
    else:
        torch._foreach_sub_(params, _scaled(directions, step_sizes))


def descend_rms_(
    params: list[Tensor],
    directions: list[Tensor],
    mean_squares: list[Tensor],
    step_sizes: Scalar | Sequence[Scalar],
    eps: Scalar | Sequence[Scalar],
) -> None:
    r"""A step scaled by the RMS, :math:`w \leftarrow w - \eta\, d/(\sqrt s + \epsilon)`.

    :math:`\epsilon` outside the root, as torch places it; one :math:`\eta` and :math:`\epsilon`
    for all, or one per parameter (Adam folds its bias corrections into both).
    """
    denominators = torch._foreach_sqrt(mean_squares)
    if isinstance(eps, Sequence) and not _all_numbers(eps):
        torch._foreach_add_(denominators, _realized(eps))
    else:
        torch._foreach_add_(denominators, eps)  # type: ignore[arg-type]
    if isinstance(step_sizes, float | int):
        torch._foreach_addcdiv_(params, directions, denominators, value=-step_sizes)
    elif _all_numbers(step_sizes):
        sizes = [-size for size in step_sizes]  # type: ignore[union-attr]
        torch._foreach_addcdiv_(params, directions, denominators, sizes)
    else:
        torch._foreach_sub_(
            params, _scaled(torch._foreach_div(directions, denominators), step_sizes)
        )


def _scaled(tensors: list[Tensor], scales: Scalar | Sequence[Scalar]) -> list[Tensor]:
    """`scales[i] · tensors[i]` (or one scale for all), as new tensors."""
    if isinstance(scales, Sequence):
        return torch._foreach_mul(tensors, _realized(scales))
    return torch._foreach_mul(tensors, scales)


def _realized(scalars: Sequence[Scalar]) -> list[Scalar]:
    """The scalars as they are, or 0-d tensors computed once into one small buffer.

    Compiled, Inductor would otherwise inline each scalar's formula (powers, roots) into the
    fused loop over the weights, and recompute it for every 16 of them: 2.6× slower for Adam.
    """
    if _all_numbers(scalars):
        return list(scalars)
    return list(torch.stack([torch.as_tensor(s) for s in scalars]).unbind(0))


def _all_numbers(values: object) -> bool:
    return isinstance(values, Sequence) and all(isinstance(v, float | int) for v in values)


def _all_equal_numbers(values: Scalar | Sequence[Scalar]) -> bool:
    return _all_numbers(values) and all(v == values[0] for v in values)  # type: ignore[index]
