r"""The article's equations, each written once and shared by the optimizers and `ewa`.

Each works in place over a list of tensors with `torch._foreach_*` kernels (one launch for the
whole list), in the manner of optax's `update_moment` and `bias_correction`:

- coupled weight decay      :math:`g + \lambda w`                      `with_weight_decay`
- the EMA (a moment)        :math:`m \leftarrow \beta m + (1-\beta)\, x^k`   `update_moment_`
- the heavy-ball velocity   :math:`v \leftarrow \beta v + g`           `update_velocity_`
- bias correction           :math:`1 - \beta^t`                        `bias_correction`
- the descent step          :math:`w \leftarrow w - \eta\, d`          `descend_`
- the step scaled by the RMS :math:`w \leftarrow w - \eta\, d/(\sqrt s + \epsilon)`  `descend_rms_`

The lists must share one device and dtype (`_foreach.split_by_device_and_dtype` cuts them).
"""

from collections.abc import Sequence

import torch
from torch import Tensor


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


def bias_correction(beta: float, step: float) -> float:
    r""":math:`1 - \beta^t`: the weights of an EMA started at zero sum to this after t steps.

    Dividing by it makes them sum to 1.
    """
    return 1 - beta**step


def descend_(
    params: list[Tensor], directions: list[Tensor], step_sizes: float | Sequence[float]
) -> None:
    r""":math:`w_i \leftarrow w_i - \eta_i\, d_i`, in one pass when all :math:`\eta_i` agree.

    One step size for all, or one per parameter: those differ only where bias correction counts
    a parameter's own steps (one that joined the model later has taken fewer).
    """
    if not isinstance(step_sizes, Sequence):
        torch._foreach_add_(params, directions, alpha=-step_sizes)
    elif all(size == step_sizes[0] for size in step_sizes):
        torch._foreach_add_(params, directions, alpha=-step_sizes[0])
    else:
        torch._foreach_add_(params, torch._foreach_mul(directions, [-s for s in step_sizes]))


def descend_rms_(
    params: list[Tensor],
    directions: list[Tensor],
    mean_squares: list[Tensor],
    step_sizes: float | Sequence[float],
    eps: float | Sequence[float],
) -> None:
    r"""A step scaled by the RMS, :math:`w \leftarrow w - \eta\, d/(\sqrt s + \epsilon)`.

    :math:`\epsilon` outside the root, as torch places it; one :math:`\eta` and :math:`\epsilon`
    for all, or one per parameter (Adam folds its bias corrections into both).
    """
    denominators = torch._foreach_sqrt(mean_squares)
    torch._foreach_add_(denominators, eps)
    if isinstance(step_sizes, Sequence):
        torch._foreach_addcdiv_(params, directions, denominators, [-s for s in step_sizes])
    else:
        torch._foreach_addcdiv_(params, directions, denominators, value=-step_sizes)
