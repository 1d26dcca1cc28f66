"""Adam: momentum on the gradient divided by RMSprop's root mean square, both bias-corrected."""

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from catdog.optim import _maths as maths
from catdog.optim._checks import check_number
from catdog.optim._compile import Compile
from catdog.optim._foreach import Closure, evaluate, params_with_grads, split_by_device_and_dtype
from catdog.optim.base import Optimizer


class Adam(Optimizer):
    r"""Adaptive moment estimation (Kingma & Ba, 2015), with coupled weight decay.

    With :math:`g = \nabla_w L + \lambda w`, moments :math:`m_0 = s_0 = 0`, step :math:`t \ge 1`:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\, g, \qquad
        s_t = \beta_2 s_{t-1} + (1-\beta_2)\, g^2,

    .. math::
        \hat m_t = \frac{m_t}{1-\beta_1^t}, \quad \hat s_t = \frac{s_t}{1-\beta_2^t}, \quad
        w \leftarrow w - \eta\, \frac{\hat m_t}{\sqrt{\hat s_t} + \epsilon}

    This is the update of `torch.optim.Adam` (same :math:`\epsilon` placement: outside the root,
    after bias correction). We evaluate it as
    :math:`w \leftarrow w - \frac{\eta\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,
    \frac{m_t}{\sqrt{s_t} + \epsilon\sqrt{1-\beta_2^t}}`, the same number in exact arithmetic,
    one pass over memory fewer than dividing :math:`\sqrt{s_t}` by :math:`\sqrt{1-\beta_2^t}`;
    results differ from torch's by rounding only. State per parameter: ``first_moment``
    (:math:`m`), ``second_moment`` (:math:`s`) and ``step`` (a float64 0-d tensor).

    `compile`: "auto" (default), True or False — run the step compiled by torch.compile, see
    `catdog.optim._compile`; the eager step is the reference, and both give the same numbers up
    to rounding.
    """

    parameter_copies = 3  # the two moments, and the step's denominators

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        compile: Compile = "auto",
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults, compile)

    @classmethod
    def check_settings(cls, hyperparameters: dict[str, Any]) -> None:
        check_number("learning rate", hyperparameters.get("lr"), 0.0)
        betas = hyperparameters.get("betas")
        if not isinstance(betas, tuple | list) or len(betas) != 2:
            raise ValueError(f"Invalid betas: {betas!r} (must be a pair (beta1, beta2))")
        check_number("beta1 value", betas[0], 0.0, 1.0)
        check_number("beta2 value", betas[1], 0.0, 1.0)
        check_number("eps value", hyperparameters.get("eps"), 0.0)
        check_number("weight_decay value", hyperparameters.get("weight_decay"), 0.0)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Any:  # type: ignore[override]
        loss = evaluate(closure)
        for group in self.param_groups:
            params, grads = params_with_grads(group, "Adam")
            if not params:
                continue
            states = [
                self.initialized_state(p, "first_moment", "second_moment", counts_steps=True)
                for p in params
            ]
            beta1, beta2 = group["betas"]
            self.apply_step(
                adam,
                params=params,
                grads=grads,
                first_moments=[state["first_moment"] for state in states],
                second_moments=[state["second_moment"] for state in states],
                steps=[state["step"] for state in states],
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
            )
        return loss


def adam(
    params: list[Tensor],
    grads: list[Tensor],
    first_moments: list[Tensor],
    second_moments: list[Tensor],
    steps: list[Tensor],
    *,
    lr: maths.Scalar,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """One Adam step over lists of tensors; `steps`, the parameters' step counts (0-d tensors),
    are counted one more here."""
    counted = maths.count_steps(steps)
    for device_params, device_grads, device_m, device_s, device_steps in split_by_device_and_dtype(
        params, grads, first_moments, second_moments, counted
    ):
        device_grads = maths.with_weight_decay(device_grads, device_params, weight_decay)
        maths.update_moment_(device_m, device_grads, beta1)
        maths.update_moment_(device_s, device_grads, beta2, order=2)
        # Bias corrections are per parameter: one added to the model later has taken fewer steps.
        second_correction_roots = [maths.bias_correction(beta2, t) ** 0.5 for t in device_steps]
        step_sizes = [
            lr * root / maths.bias_correction(beta1, t)
            for root, t in zip(second_correction_roots, device_steps, strict=True)
        ]
        epsilons = [eps * root for root in second_correction_roots]
        maths.descend_rms_(device_params, device_m, device_s, step_sizes, epsilons)
