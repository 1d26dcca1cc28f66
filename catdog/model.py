"""The article's network: fully connected layers on the flattened photo."""

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """`in_features → hidden… → 1`, ReLU between layers.

    `forward` returns the logit z of the last neuron; the article's sigmoid output,
    read as P(dog), is `torch.sigmoid(z)` (`probability`). Keeping the logit lets the
    BCE loss use the numerically stable log-sigmoid form.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (512, 128),
        dropout: float = 0.0,
        batch_norm: bool = False,
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if input_dropout > 0:
            layers.append(nn.Dropout(input_dropout))
        width = in_features
        for size in hidden:
            layers.append(nn.Linear(width, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)
        self.in_features = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1)).squeeze(-1)

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """P(dog) for each row of `x`."""
        return torch.sigmoid(self(x))
