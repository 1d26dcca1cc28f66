"""Nesterov's accelerated gradient: momentum whose gradient is taken where momentum is heading."""

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from catdog.optim import _maths as maths
from catdog.optim._checks import check_choice, check_number
from catdog.optim._compile import Compile
from catdog.optim._foreach import Closure, evaluate, params_with_grads, split_by_device_and_dtype
from catdog.optim.base import Optimizer
from catdog.optim.momentum import momentum


class Nesterov(Optimizer):
    r"""Classic momentum, but the gradient is taken at the look-ahead point :math:`w - \eta\beta v`.

    With velocity :math:`v_0 = 0` and coupled weight decay :math:`\lambda`:

    .. math::
        \tilde w = w_{t-1} - \eta\beta v_{t-1}, \quad
        g_t = \nabla L(\tilde w) + \lambda \tilde w, \quad
        v_t = \beta v_{t-1} + g_t, \quad
        w_t = w_{t-1} - \eta v_t

    ``lookahead=True`` does exactly that: `step(closure)` moves the weights to :math:`\tilde w`,
    calls the closure (zero grads, forward, backward, return the loss, which is therefore the
    loss at :math:`\tilde w`), moves the weights back and takes a classic `Momentum` step with
    that gradient. `needs_closure` is True.

    ``lookahead=False`` (torch's `SGD(nesterov=True)`) needs no closure: it stores the look-ahead
    point :math:`p_t = w_t - \eta\beta v_t` instead of :math:`w_t`, so the ordinary gradient at the
    stored weights is the one wanted. From :math:`\eta\beta v_{t-1} = \eta(v_t - g_t)`,

    .. math::
        g_t = \nabla L(p_{t-1}) + \lambda p_{t-1}, \quad
        v_t = \beta v_{t-1} + g_t, \quad
        p_t = p_{t-1} - \eta\,(g_t + \beta v_t)

    and :math:`p_0 = w_0` as :math:`v_0 = 0`: both trace the same path, read at different points.
    State per parameter: ``velocity``.

    `compile`: "auto" (default), True or False — run the step compiled by torch.compile, see
    `catdog.optim._compile`; the eager step is the reference, and both give the same numbers up
    to rounding.
    """

    parameter_copies = 1

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        beta: float = 0.9,
        lookahead: bool = False,
        weight_decay: float = 0.0,
        compile: Compile = "auto",
    ) -> None:
        defaults = {"lr": lr, "beta": beta, "weight_decay": weight_decay}
        super().__init__(params, defaults, compile, lookahead=lookahead)
        self.lookahead = lookahead
        # Only the literal look-ahead re-evaluates the loss, at the look-ahead point.
        self.needs_closure = lookahead

    @classmethod
    def check_settings(cls, hyperparameters: dict[str, Any]) -> None:
        if "lookahead" in hyperparameters:  # a constructor argument, not a group setting
            check_choice("lookahead", hyperparameters["lookahead"], (False, True))
        check_number("learning rate", hyperparameters.get("lr"), 0.0)
        check_number("beta value", hyperparameters.get("beta"), 0.0, 1.0)
        check_number("weight_decay value", hyperparameters.get("weight_decay"), 0.0)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Any:  # type: ignore[override]
        if self.lookahead:
            if closure is None:
                raise RuntimeError(
                    "Nesterov(lookahead=True) needs step(closure): a closure that zeroes the "
                    "grads, runs forward and backward, and returns the loss"
                )
            return self._lookahead_step(closure)
        loss = evaluate(closure)
        for group in self.param_groups:
            params, grads = params_with_grads(group, "Nesterov")
            if params:
                self.apply_step(
                    nesterov,
                    params=params,
                    grads=grads,
                    velocities=[self.initialized_state(p, "velocity")["velocity"] for p in params],
                    lr=group["lr"],
                    beta=group["beta"],
                    weight_decay=group["weight_decay"],
                )
        return loss

    def _lookahead_step(self, closure: Closure) -> Any:
        # Parameters without a velocity yet have v = 0: their look-ahead point is where they are.
        moved: list[tuple[list[Tensor], list[Tensor]]] = []
        for group in self.param_groups:
            params = [p for p in group["params"] if "velocity" in self.state.get(p, {})]
            moved.append((params, [param.clone() for param in params]))
            if params:
                velocities = [self.state[param]["velocity"] for param in params]
                maths.descend_(params, velocities, group["lr"] * group["beta"])
        try:
            loss = evaluate(closure)
            gradients = [_gradients_with_decay(group) for group in self.param_groups]
        finally:
            # Copy back rather than add lr·β·v again: exact, and done even if the closure raised.
            for params, originals in moved:
                if params:
                    torch._foreach_copy_(params, originals)
        for group, (params, grads) in zip(self.param_groups, gradients, strict=True):
            if params:
                # The decay is in the gradient already, taken at the look-ahead point.
                self.apply_step(
                    momentum,
                    params=params,
                    grads=grads,
                    velocities=[self.initialized_state(p, "velocity")["velocity"] for p in params],
                    lr=group["lr"],
                    beta=group["beta"],
                    formulation="classic",
                    bias_correction=False,
                    weight_decay=0.0,
                )
        return loss


def nesterov(
    params: list[Tensor],
    grads: list[Tensor],
    velocities: list[Tensor],
    *,
    lr: maths.Scalar,
    beta: float,
    weight_decay: float,
) -> None:
    """Reformulated step on the stored look-ahead point p: `v = β·v + g; p -= lr·(g + β·v)`."""
    for device_params, device_grads, device_velocities in split_by_device_and_dtype(
        params, grads, velocities
    ):
        device_grads = maths.with_weight_decay(device_grads, device_params, weight_decay)
        maths.update_velocity_(device_velocities, device_grads, beta)
        # Two in-place passes instead of building g + β·v: no parameter-sized temporary (its
        # allocation cost ~20% on CPU) and the caller's .grad is left as it was. Torch writes
        # g + β·v into .grad instead; the results differ by rounding only.
        maths.descend_(device_params, device_grads, lr)
        maths.descend_(device_params, device_velocities, lr * beta)


def _gradients_with_decay(group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
    """The group's parameters with grads, and `g + λ·w` taken where the weights are now.

    Called at the look-ahead point, where the gradient was taken: the decay term belongs there too.
    """
    params, grads = params_with_grads(group, "Nesterov")
    if params:
        grads = maths.with_weight_decay(grads, params, group["weight_decay"])
    return params, grads
