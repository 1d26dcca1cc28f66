"""The exponentially weighted average of a sequence, as momentum keeps one of the gradients."""

from collections.abc import Sequence
from typing import overload

import torch
from torch import Tensor

from catdog.optim import _maths as maths
from catdog.optim._checks import check_choice, check_number


@overload
def ewa(sequence: Tensor, beta: float, bias_correction: bool = False) -> Tensor: ...
@overload
def ewa(sequence: Sequence[float], beta: float, bias_correction: bool = False) -> list[float]: ...
def ewa(
    sequence: Sequence[float] | Tensor, beta: float, bias_correction: bool = False
) -> list[float] | Tensor:
    r"""Running averages :math:`v_1, \dots, v_n` of :math:`x_1, \dots, x_n`, from :math:`v_0 = 0`:

    .. math::
        v_t = \beta v_{t-1} + (1-\beta)\, x_t = (1-\beta) \sum_{k=1}^{t} \beta^{t-k} x_k

    and, with bias correction, :math:`v_t / (1-\beta^t)`: the weights :math:`(1-\beta)\beta^{t-k}`
    sum to :math:`1-\beta^t`, so dividing makes them sum to 1 (a constant sequence then averages
    to itself from the first term on). Roughly the last :math:`1/(1-\beta)` values count.

    The recurrence and the correction are the optimizers' own (`_maths.update_moment_` and
    `_maths.bias_correction`): `Momentum(formulation="ema")`'s velocity is `ewa` of its gradients.

    A list (or other sequence) of numbers gives a list of floats (averaged in float64); a tensor is
    averaged along its first dimension and gives a floating tensor of the same shape (one series
    per column).
    """
    check_number("beta value", beta, 0.0, 1.0)
    check_choice("bias_correction", bias_correction, (False, True))
    if isinstance(sequence, Tensor):
        return _ewa_tensor(sequence, beta, bias_correction)
    values = torch.tensor([float(value) for value in sequence], dtype=torch.float64)
    return _ewa_tensor(values, beta, bias_correction).tolist()


def _ewa_tensor(sequence: Tensor, beta: float, bias_correction: bool) -> Tensor:
    if sequence.dim() == 0:
        raise ValueError("ewa needs a sequence: got a 0-dimensional tensor (use a 1-D one)")
    values = sequence if sequence.is_floating_point() else sequence.to(torch.get_default_dtype())
    averages = torch.empty_like(values)
    average = values.new_zeros(values.shape[1:])
    # A loop over time, vectorised across the other dimensions: the recurrence is sequential,
    # and the closed-form sum needs β^-k, which overflows for long sequences.
    for t in range(1, len(values) + 1):
        maths.update_moment_([average], [values[t - 1]], beta)
        averages[t - 1] = average / maths.bias_correction(beta, t) if bias_correction else average
    return averages
