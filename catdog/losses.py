"""Losses on the network's logit z, whose sigmoid is P(dog); labels are cat = 0, dog = 1."""

from collections.abc import Callable

import torch
import torch.nn.functional as F

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The article's loss: mean of (label - sigmoid(z))²."""
    return torch.mean((labels - torch.sigmoid(logits)) ** 2)


def bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy, -[y·log σ(z) + (1-y)·log(1-σ(z))], in its stable logit form."""
    return F.binary_cross_entropy_with_logits(logits, labels)


LOSSES: dict[str, Loss] = {"mse": mse, "bce": bce}
