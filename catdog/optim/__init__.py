"""Our optimizers, each a `catdog.optim.base.Optimizer`, and the name → class registry.

The training loop builds an optimizer with `build_optimizer(name, params, **hyperparameters)` and
steps it with `step(optimizer, closure)`, which reads the protocol each class declares
(`needs_closure`, `uses_gradients`; see `catdog.optim.base`). The equations the optimizers share
(the EMA, the heavy-ball velocity, bias correction, coupled weight decay) live once, in
`catdog.optim._maths`; `ewa` averages a sequence with the same EMA.
"""

from collections.abc import Iterable
from typing import Any

from catdog.optim.adam import Adam
from catdog.optim.base import Optimizer, step
from catdog.optim.ewa import ewa
from catdog.optim.genetic import Genetic
from catdog.optim.momentum import Momentum
from catdog.optim.nesterov import Nesterov
from catdog.optim.rmsprop import RMSprop
from catdog.optim.sgd import SGD

OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "rmsprop": RMSprop,
    "adam": Adam,
    "genetic": Genetic,
}


def build_optimizer(name: str, params: Iterable[Any], **hyperparameters: Any) -> Optimizer:
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
    "Optimizer",
    "RMSprop",
    "build_optimizer",
    "ewa",
    "step",
]
