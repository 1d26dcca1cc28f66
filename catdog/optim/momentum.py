"""Gradient descent with momentum, in Andrew Ng's EMA form or the classic (torch) form."""

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from catdog.optim._checks import check_choice, check_number
from catdog.optim._foreach import (
    Closure,
    add_scaled_,
    evaluate,
    params_with_grads,
    split_by_device_and_dtype,
    with_weight_decay,
)

FORMULATIONS = ("ema", "classic")


class Momentum(torch.optim.Optimizer):
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
    State per parameter: ``velocity`` and ``step`` (a Python int).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        beta: float = 0.9,
        formulation: str = "ema",
        bias_correction: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {
            "lr": lr,
            "beta": beta,
            "formulation": formulation,
            "bias_correction": bias_correction,
            "weight_decay": weight_decay,
        }
        _validate(defaults)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _validate(self.defaults | param_group)
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Any:  # type: ignore[override]
        loss = evaluate(closure)
        for group in self.param_groups:
            params, grads = params_with_grads(group, "Momentum")
            if not params:
                continue
            velocities: list[Tensor] = []
            steps: list[int] = []
            for param in params:
                state = self.state[param]
                if not state:
                    state["velocity"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["step"] = 0
                state["step"] += 1
                velocities.append(state["velocity"])
                steps.append(state["step"])
            momentum(
                params,
                grads,
                velocities,
                steps,
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
    steps: list[int],
    *,
    lr: float,
    beta: float,
    formulation: str,
    bias_correction: bool,
    weight_decay: float,
) -> None:
    """One momentum step over lists of tensors; `steps` are the step numbers t, already counted."""
    for device_params, device_grads, device_velocities, device_steps in split_by_device_and_dtype(
        params, grads, velocities, steps
    ):
        device_grads = with_weight_decay(device_grads, device_params, weight_decay)
        if formulation == "ema":
            # v + (1-β)(g - v) = βv + (1-β)g in one pass over memory instead of two.
            torch._foreach_lerp_(device_velocities, device_grads, 1 - beta)
        else:
            torch._foreach_mul_(device_velocities, beta)
            torch._foreach_add_(device_velocities, device_grads)
        if bias_correction:
            # 1-β^t is per parameter: one added to the model later has taken fewer steps.
            step_sizes = [-lr / (1 - beta**t) for t in device_steps]
            add_scaled_(device_params, device_velocities, step_sizes)
        else:
            torch._foreach_add_(device_params, device_velocities, alpha=-lr)


def _validate(hyperparameters: dict[str, Any]) -> None:
    check_number("learning rate", hyperparameters.get("lr"), 0.0)
    check_number("beta value", hyperparameters.get("beta"), 0.0, 1.0)
    check_choice("formulation", hyperparameters.get("formulation"), FORMULATIONS)
    check_choice("bias_correction", hyperparameters.get("bias_correction"), (False, True))
    check_number("weight_decay value", hyperparameters.get("weight_decay"), 0.0)
