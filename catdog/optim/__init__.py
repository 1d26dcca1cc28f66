"""Our optimizers, each a `torch.optim.Optimizer` subclass, and the name → class registry.

The training loop builds an optimizer with `build_optimizer(name, params, **hyperparameters)`.
A class may set two class attributes the loop reads:
- `needs_closure = True`: `step(closure)` must be given a closure that zeroes the gradients,
  runs forward and backward, and returns the loss (Nesterov's literal look-ahead).
- `uses_gradients = False`: the closure returns the loss without backward and is run under
  `torch.no_grad()` (the genetic algorithm).
"""

from collections.abc import Iterable
from typing import Any

import torch

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {}


def build_optimizer(name: str, params: Iterable[Any], **hyperparameters: Any) -> torch.optim.Optimizer:
    try:
        cls = OPTIMIZERS[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}") from None
    return cls(params, **hyperparameters)
