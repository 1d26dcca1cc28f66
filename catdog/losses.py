"""Losses on the network's logit z, whose sigmoid is P(dog); labels are cat = 0, dog = 1.

Logits may be (B,) for one network or (B, N) for an ensemble of N; the labels (B,) then apply
to every member, and the loss is the mean over members of each member's mean loss.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The article's loss: mean of (label - sigmoid(z))²."""
    return torch.mean((_per_member(labels, logits) - torch.sigmoid(logits)) ** 2)


def bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy, -[y·log σ(z) + (1-y)·log(1-σ(z))], in its stable logit form."""
    return F.binary_cross_entropy_with_logits(logits, _per_member(labels, logits))


def _per_member(labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Labels (B,) repeated for each column of (B, N) logits; unchanged for (B,) logits."""
    if logits.ndim == labels.ndim + 1:
        return labels.unsqueeze(-1).expand_as(logits)
    return labels


LOSSES: dict[str, Loss] = {"mse": mse, "bce": bce}
