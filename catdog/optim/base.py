"""What every catdog optimizer shares: validated param groups, and the protocol the loop reads.

The training loop (and the ravine) drive any optimizer through `step(optimizer, closure)`, which
reads two class attributes instead of guessing with getattr:

- `needs_closure`: `optimizer.step(closure)` calls the closure itself, maybe several times
  (Nesterov's literal look-ahead once, at the look-ahead point; the genetic algorithm once per
  member). Otherwise the closure runs once here, before a plain `optimizer.step()`.
- `uses_gradients`: False when the closure must only return the loss, without backward, and can
  run under `torch.no_grad()` (the genetic algorithm).

and `memory_bytes(weights, **hyperparameters)`, an upper bound on what the optimizer allocates
for a network of `weights` numbers, so a run can be refused before it starts.
"""

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor


class Optimizer(torch.optim.Optimizer):
    """A `torch.optim.Optimizer` whose hyperparameters are checked for every param group."""

    uses_gradients: ClassVar[bool] = True
    needs_closure: bool = False
    parameter_copies: ClassVar[int] = 0
    """Parameter-sized tensors the optimizer holds at its peak: its state and the step's
    temporaries (a weight-decayed gradient adds one more)."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.check_hyperparameters(defaults)
        super().__init__(params, defaults)

    @classmethod
    def check_hyperparameters(cls, hyperparameters: dict[str, Any]) -> None:
        """Raise a `ValueError` naming the first bad value of one param group's settings."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # torch calls this for each group passed to __init__ too: every group is checked whole.
        self.check_hyperparameters(self.defaults | param_group)
        super().add_param_group(param_group)

    def initialized_state(
        self, param: Tensor, *tensors: str, counts_steps: bool = False
    ) -> dict[str, Any]:
        """`param`'s state, made on first use: a zero tensor like it for each name in `tensors`,
        and a step count of 0 when `counts_steps`."""
        state = self.state[param]
        if not state:
            for name in tensors:
                state[name] = torch.zeros_like(param, memory_format=torch.preserve_format)
            if counts_steps:
                state["step"] = 0
        return state

    @classmethod
    def memory_bytes(
        cls,
        weights: int,
        *,
        dtype: torch.dtype = torch.float32,
        **hyperparameters: Any,
    ) -> int:
        """Peak bytes beyond the weights and their gradients, for `weights` numbers of `dtype`."""
        copies = cls.parameter_copies + (hyperparameters.get("weight_decay", 0) != 0)
        return copies * weights * torch.empty((), dtype=dtype).element_size()


def step(optimizer: Optimizer, closure: Callable[[], Any]) -> Tensor:
    """One step of `optimizer`, with or without the closure as it needs; returns the loss, detached.

    `closure` zeroes the grads, runs forward and (when `optimizer.uses_gradients`) backward, and
    returns the loss.
    """
    if optimizer.needs_closure:
        loss = optimizer.step(closure)
    else:
        loss = closure()
        optimizer.step()
    return torch.as_tensor(loss).detach()
