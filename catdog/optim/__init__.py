"""Our optimizers, each a `torch.optim.Optimizer` subclass, and the name → class registry.

The training loop builds an optimizer with `build_optimizer(name, params, **hyperparameters)`.
A class may set two class attributes the loop reads:
- `needs_closure = True`: `step(closure)` must be given a closure that zeroes the gradients,
  runs forward and backward, and returns the loss (Nesterov's literal look-ahead). Read it on
  the instance: `Nesterov` makes it a property, True only with `lookahead=True`.
- `uses_gradients = False`: the closure returns the loss without backward and is run under
  `torch.no_grad()` (the genetic algorithm).
"""

from collections.abc import Iterable
from typing import Any

import torch

from catdog.optim.adam import Adam
from catdog.optim.ewa import ewa
from catdog.optim.genetic import Genetic
from catdog.optim.momentum import Momentum
from catdog.optim.nesterov import Nesterov
from catdog.optim.rmsprop import RMSprop
from catdog.optim.sgd import SGD

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "rmsprop": RMSprop,
    "adam": Adam,
    "genetic": Genetic,
}


def build_optimizer(
    name: str, params: Iterable[Any], **hyperparameters: Any
) -> torch.optim.Optimizer:
    try:
        cls = OPTIMIZERS[name]
    except KeyError:
        known = sorted(OPTIMIZERS)
        raise ValueError(f"unknown optimizer {name!r}; choose one of {known}") from None
    return cls(params, **hyperparameters)


__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "Genetic",
    "Momentum",
    "Nesterov",
    "RMSprop",
    "build_optimizer",
    "ewa",
]
