"""RMSprop: divide each step by a running root-mean-square of the gradient."""

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from catdog.optim import _maths as maths
from catdog.optim._checks import check_number
from catdog.optim._compile import Compile
from catdog.optim._foreach import Closure, evaluate, params_with_grads, split_by_device_and_dtype
from catdog.optim.base import Optimizer


class RMSprop(Optimizer):
    r"""Scale each weight's step by the inverse RMS of its recent gradients.

    With :math:`g = \nabla_w L + \lambda w` and the mean square :math:`s` starting at 0:

    .. math::
        s \leftarrow \beta s + (1-\beta)\, g^2, \qquad
        w \leftarrow w - \eta\, \frac{g}{\sqrt{s} + \epsilon}

    (element-wise). This is `torch.optim.RMSprop(alpha=β, eps=ε)` without its `centered` and
    `momentum` options, and with the same :math:`\epsilon` placement (outside the square root);
    only the default :math:`\beta` differs (torch's `alpha` defaults to 0.99). No bias correction:
    :math:`s` is small for the first steps, so those steps are larger than later ones.
    State per parameter: ``mean_square``.

    `compile`: "auto" (default), True or False — run the step compiled by torch.compile, see
    `catdog.optim._compile`; the eager step is the reference, and both give the same numbers up
    to rounding.
    """

    parameter_copies = 2  # the mean square, and the step's denominators

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        beta: float = 0.9,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        compile: Compile = "auto",
    ) -> None:
        defaults = {"lr": lr, "beta": beta, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults, compile)

    @classmethod
    def check_settings(cls, hyperparameters: dict[str, Any]) -> None:
        check_number("learning rate", hyperparameters.get("lr"), 0.0)
        check_number("beta value", hyperparameters.get("beta"), 0.0, 1.0)
        check_number("eps value", hyperparameters.get("eps"), 0.0)
        check_number("weight_decay value", hyperparameters.get("weight_decay"), 0.0)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Any:  # type: ignore[override]
        loss = evaluate(closure)
        for group in self.param_groups:
            params, grads = params_with_grads(group, "RMSprop")
            if not params:
                continue
            self.apply_step(
                rmsprop,
                params=params,
                grads=grads,
                mean_squares=[
                    self.initialized_state(p, "mean_square")["mean_square"] for p in params
                ],
                lr=group["lr"],
                beta=group["beta"],
                eps=group["eps"],
                weight_decay=group["weight_decay"],
            )
        return loss


def rmsprop(
    params: list[Tensor],
    grads: list[Tensor],
    mean_squares: list[Tensor],
    *,
    lr: maths.Scalar,
    beta: float,
    eps: float,
    weight_decay: float,
) -> None:
    """`s = β·s + (1-β)·g²; w -= lr·g/(√s + eps)` over lists of tensors."""
    for device_params, device_grads, device_mean_squares in split_by_device_and_dtype(
        params, grads, mean_squares
    ):
        device_grads = maths.with_weight_decay(device_grads, device_params, weight_decay)
        maths.update_moment_(device_mean_squares, device_grads, beta, order=2)
        maths.descend_rms_(device_params, device_grads, device_mean_squares, lr, eps)
