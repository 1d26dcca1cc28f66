"""Plain stochastic gradient descent."""

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from catdog.optim import _maths as maths
from catdog.optim._checks import check_number
from catdog.optim._compile import Compile
from catdog.optim._foreach import Closure, evaluate, params_with_grads, split_by_device_and_dtype
from catdog.optim.base import Optimizer


class SGD(Optimizer):
    r"""Gradient descent on each mini-batch's gradient.

    .. math::
        g \leftarrow \nabla_w L + \lambda w, \qquad w \leftarrow w - \eta\, g

    with learning rate :math:`\eta` (`lr`) and coupled weight decay :math:`\lambda`
    (`weight_decay`, the gradient of :math:`\tfrac{\lambda}{2}\lVert w\rVert^2`). No state.

    `compile`: "auto" (default), True or False — run the step compiled by torch.compile, see
    `catdog.optim._compile`; the eager step is the reference, and both give the same numbers up
    to rounding.
    """

    # Eager SGD is one pass over memory already (two with weight decay); compiled, it measured
    # 1.4-2x slower on this CPU (scripts/bench_optim.py), so `auto` leaves it eager.
    compile_pays = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        weight_decay: float = 0.0,
        compile: Compile = "auto",
    ) -> None:
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay}, compile)

    @classmethod
    def check_settings(cls, hyperparameters: dict[str, Any]) -> None:
        check_number("learning rate", hyperparameters.get("lr"), 0.0)
        check_number("weight_decay value", hyperparameters.get("weight_decay"), 0.0)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Any:  # type: ignore[override]
        loss = evaluate(closure)
        for group in self.param_groups:
            params, grads = params_with_grads(group, "SGD")
            if params:
                self.apply_step(
                    sgd,
                    params=params,
                    grads=grads,
                    lr=group["lr"],
                    weight_decay=group["weight_decay"],
                )
        return loss


def sgd(
    params: list[Tensor], grads: list[Tensor], *, lr: maths.Scalar, weight_decay: float
) -> None:
    """`w -= lr·(g + weight_decay·w)` over lists of tensors, in place on `params`."""
    for device_params, device_grads in split_by_device_and_dtype(params, grads):
        decayed = maths.with_weight_decay(device_grads, device_params, weight_decay)
        maths.descend_(device_params, decayed, lr)
