"""Plumbing between param groups and the `torch._foreach_*` kernels.

A foreach kernel launches once for a whole list of tensors, but only takes its fast path
when every tensor in the list shares one device and dtype; `split_by_device_and_dtype`
cuts parallel lists at those boundaries. State tensors are created `zeros_like` their
parameter (and `load_state_dict` casts them back to it), so the parameters' device and
dtype decide for every list.
"""

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

Closure = Callable[[], Any]


def evaluate(closure: Closure | None) -> Any:
    """Run the optional closure with gradients enabled (`step` itself runs under no_grad)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def params_with_grads(group: dict[str, Any], optimizer: str) -> tuple[list[Tensor], list[Tensor]]:
    """The group's parameters that have a gradient, and those gradients; the rest are skipped."""
    params: list[Tensor] = []
    grads: list[Tensor] = []
    for param in group["params"]:
        if param.grad is None:
            continue
        if param.grad.is_sparse:
            raise RuntimeError(f"{optimizer} does not support sparse gradients")
        params.append(param)
        grads.append(param.grad)
    return params, grads


def split_by_device_and_dtype(*lists: Sequence[Any]) -> list[tuple[list[Any], ...]]:
    """Cut parallel lists into runs sharing the first list's (device, dtype), in order.

    The common case, one device and one dtype, returns the lists whole without copying entries.
    """
    keys = [(tensor.device, tensor.dtype) for tensor in lists[0]]
    if all(key == keys[0] for key in keys):
        return [tuple(list(items) for items in lists)]
    indices: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for index, key in enumerate(keys):
        indices.setdefault(key, []).append(index)
    return [tuple([items[i] for i in run] for items in lists) for run in indices.values()]
