"""RMSprop: divide each step by a running root-mean-square of the gradient."""

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from catdog.optim._checks import check_number
from catdog.optim._foreach import (
    Closure,
    evaluate,
    params_with_grads,
    split_by_device_and_dtype,
    with_weight_decay,
)


class RMSprop(torch.optim.Optimizer):
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
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        beta: float = 0.9,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {"lr": lr, "beta": beta, "eps": eps, "weight_decay": weight_decay}
        _validate(defaults)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _validate(self.defaults | param_group)
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Any:  # type: ignore[override]
        loss = evaluate(closure)
        for group in self.param_groups:
            params, grads = params_with_grads(group, "RMSprop")
            if not params:
                continue
            mean_squares: list[Tensor] = []
            for param in params:
                state = self.state[param]
                if not state:
                    state["mean_square"] = torch.zeros_like(
                        param, memory_format=torch.preserve_format
                    )
                mean_squares.append(state["mean_square"])
            rmsprop(
                params,
                grads,
                mean_squares,
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
    lr: float,
    beta: float,
    eps: float,
    weight_decay: float,
) -> None:
    """`s = β·s + (1-β)·g²; w -= lr·g/(√s + eps)` over lists of tensors."""
    for device_params, device_grads, device_mean_squares in split_by_device_and_dtype(
        params, grads, mean_squares
    ):
        device_grads = with_weight_decay(device_grads, device_params, weight_decay)
        torch._foreach_mul_(device_mean_squares, beta)
        torch._foreach_addcmul_(device_mean_squares, device_grads, device_grads, value=1 - beta)
        denominators = torch._foreach_sqrt(device_mean_squares)
        torch._foreach_add_(denominators, eps)
        torch._foreach_addcdiv_(device_params, device_grads, denominators, value=-lr)


def _validate(hyperparameters: dict[str, Any]) -> None:
    check_number("learning rate", hyperparameters.get("lr"), 0.0)
    check_number("beta value", hyperparameters.get("beta"), 0.0, 1.0)
    check_number("eps value", hyperparameters.get("eps"), 0.0)
    check_number("weight_decay value", hyperparameters.get("weight_decay"), 0.0)
