"""Gradient descent with momentum, in Andrew Ng's EMA form or the classic (torch) form."""

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from catdog.optim import _maths as maths
from catdog.optim._checks import check_choice, check_number
from catdog.optim._compile import Compile
from catdog.optim._foreach import Closure, evaluate, params_with_grads, split_by_device_and_dtype
from catdog.optim.base import Optimizer

FORMULATIONS = ("ema", "classic")


class Momentum(Optimizer):
    r"""Descend along a running average of the gradients, the velocity :math:`v` (starts at 0).

    With :math:`g = \nabla_w L + \lambda w` and :math:`t = 1, 2, \dots` the step number:

    .. math::
        \text{ema:} \quad v_t = \beta v_{t-1} + (1-\beta)\, g_t \qquad
        \text{classic:} \quad v_t = \beta v_{t-1} + g_t

    .. math::
        w \leftarrow w - \eta\, v_t
        \quad\text{or, with bias correction,}\quad
        w \leftarrow w - \eta\, \frac{v_t}{1-\beta^t}

    The two forms differ only by scale: ``ema`` velocity is :math:`(1-\beta)` times ``classic``
    velocity, so ``ema`` with :math:`\eta` walks the path of ``classic`` with :math:`\eta(1-\beta)`.
    ``classic`` is `torch.optim.SGD(momentum=β)`; ``ema`` is *not* `SGD(dampening=β)`, which
    starts its buffer at :math:`g_1` instead of :math:`(1-\beta)g_1`. Bias correction undoes the
    zero start: for a constant gradient, ``ema`` then steps by exactly :math:`\eta g` every time.
    The ``ema`` velocity is `ewa` of the gradients, term for term.
    State per parameter: ``velocity`` and ``step`` (a float64 0-d tensor).

    `compile`: "auto" (default), True or False — run the step compiled by torch.compile, see
    `catdog.optim._compile`; the eager step is the reference, and both give the same numbers up
    to rounding.
    """

    parameter_copies = 1
    # `auto` compiles it (large CPU networks): compiled, its step took 0.64-0.78x the eager one
    # on 4 x 768-512-128-1 networks at 1 and 2 threads, all four forms (scripts/bench_optim.py,
    # an idle machine); the eager step is two or three foreach passes over memory.

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        beta: float = 0.9,
        formulation: str = "ema",
        bias_correction: bool = False,
        weight_decay: float = 0.0,
        compile: Compile = "auto",
    ) -> None:
        defaults = {
            "lr": lr,
            "beta": beta,
            "formulation": formulation,
            "bias_correction": bias_correction,
            "weight_decay": weight_decay,
        }
        super().__init__(params, defaults, compile)

    @classmethod
    def check_settings(cls, hyperparameters: dict[str, Any]) -> None:
        check_number("learning rate", hyperparameters.get("lr"), 0.0)
        check_number("beta value", hyperparameters.get("beta"), 0.0, 1.0)
        check_choice("formulation", hyperparameters.get("formulation"), FORMULATIONS)
        check_choice("bias_correction", hyperparameters.get("bias_correction"), (False, True))
        check_number("weight_decay value", hyperparameters.get("weight_decay"), 0.0)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Any:  # type: ignore[override]
        loss = evaluate(closure)
        for group in self.param_groups:
            params, grads = params_with_grads(group, "Momentum")
            if not params:
                continue
            states = [self.initialized_state(p, "velocity", counts_steps=True) for p in params]
            self.apply_step(
                momentum,
                params=params,
                grads=grads,
                velocities=[state["velocity"] for state in states],
                steps=[state["step"] for state in states],
                lr=group["lr"],
                beta=group["beta"],
                formulation=group["formulation"],
                bias_correction=group["bias_correction"],
                weight_decay=group["weight_decay"],
            )
        return loss


def momentum(
    params: list[Tensor],
    grads: list[Tensor],
    velocities: list[Tensor],
    steps: list[Tensor] | None = None,
    *,
    lr: maths.Scalar,
    beta: float,
    formulation: str,
    bias_correction: bool,
    weight_decay: float,
) -> None:
    """One momentum step over lists of tensors.

    `steps` are the parameters' step counts (0-d tensors), counted one more here (None: none
    kept); only bias correction reads them.
    """
    counted = maths.count_steps(steps) if steps is not None else [0] * len(params)
    for device_params, device_grads, device_velocities, device_steps in split_by_device_and_dtype(
        params, grads, velocities, counted
    ):
        device_grads = maths.with_weight_decay(device_grads, device_params, weight_decay)
        if formulation == "ema":
            maths.update_moment_(device_velocities, device_grads, beta)
        else:
            maths.update_velocity_(device_velocities, device_grads, beta)
        if bias_correction:
            step_sizes = [lr / maths.bias_correction(beta, t) for t in device_steps]
            maths.descend_(device_params, device_velocities, step_sizes)
        else:
            maths.descend_(device_params, device_velocities, lr)
