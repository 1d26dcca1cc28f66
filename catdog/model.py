"""The article's network: fully connected layers on the flattened photo, alone or as an ensemble."""

import math
from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """`in_features → hidden… → 1`, ReLU between layers; `members` such networks side by side.

    `forward` returns the logit z of the last neuron; the article's sigmoid output,
    read as P(dog), is `torch.sigmoid(z)`. Keeping the logit lets the BCE loss use the
    numerically stable log-sigmoid form.

    members = 1 is one network of `nn.Linear` layers; `forward` gives z of shape (B,).
    members = N > 1 is N independent networks (own init, own dropout masks) evaluated in one
    batched matrix product per layer, h_k ← b_k + h_k W_k for k = 1…N (`torch.baddbmm`);
    `forward` gives (B, N), column k being member k's logit. `probability` averages the
    members' P(dog): p = (1/N) Σ_k σ(z_k).

    whiten = True puts a fixed (untrained) linear map x ↦ (x − μ) W before the first layer,
    `Whitening`, shared by all members; its μ and W are buffers, set once from the training
    photos and saved with the weights, so every use of the network reads its input the same way.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (512, 128),
        dropout: float = 0.0,
        batch_norm: bool = False,
        input_dropout: float = 0.0,
        members: int = 1,
        whiten: bool = False,
    ) -> None:
        super().__init__()
        if members < 1:
            raise ValueError(f"members={members}: an ensemble needs at least 1 network")
        self.whitening = Whitening(in_features) if whiten else None
        layers: list[nn.Module] = []
        if input_dropout > 0:
            layers.append(nn.Dropout(input_dropout))
        width = in_features
        for size in hidden:
            layers.append(_linear(width, size, members))
            if batch_norm:
                layers.append(
                    nn.BatchNorm1d(size) if members == 1 else MemberBatchNorm(members, size)
                )
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(_linear(width, 1, members))
        self.layers = nn.Sequential(*layers)
        self.in_features = in_features
        self.members = members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if self.whitening is not None:
            x = self.whitening(x)  # once, shared by every member
        if self.members == 1:
            return self.layers(x).squeeze(-1)
        # (N, B, in): every member reads the same photos; expand copies nothing.
        z = self.layers(x.expand(self.members, *x.shape))
        return z.squeeze(-1).T

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """P(dog) for each row of `x`: the members' mean when there are several."""
        p = torch.sigmoid(self(x))
        return p if self.members == 1 else p.mean(dim=1)


class Whitening(nn.Module):
    """A fixed affine map of the input, x ↦ (x − μ) W: ZCA whitening when μ and W come from
    `catdog.batches.zca_whitening`. Identity until `set` is called; nothing here is trained."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("matrix", torch.eye(features))

    def set(self, mean: torch.Tensor, matrix: torch.Tensor) -> None:
        features = len(self.mean)
        if mean.shape != (features,) or matrix.shape != (features, features):
            raise ValueError(
                f"whitening for {features} features needs mean ({features},) and matrix "
                f"({features}, {features}), got {tuple(mean.shape)} and {tuple(matrix.shape)}"
            )
        self.mean.copy_(mean)
        self.matrix.copy_(matrix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Always in float32, also under bf16 autocast: W's entries span 1/√(λ+ε), and bf16's
        # 8-bit mantissa would blur the small eigen-directions whitening exists to lift.
        with torch.autocast(x.device.type, enabled=False):
            # (x − μ) W as one fused product: x W − μ W.
            # In the layer's own dtype (float32 in training, float64 in catdog gradcheck).
            return torch.addmm(-(self.mean @ self.matrix), x.to(self.matrix.dtype), self.matrix)


class MemberLinear(nn.Module):
    """N independent affine maps, (N, B, in) → (N, B, out): y_k = b_k + x_k W_k.

    Each member is initialised as `nn.Linear(in, out)` is: W and b uniform in ±1/√in.
    """

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class MemberBatchNorm(nn.Module):
    """Batch normalisation with statistics per member and feature, on (N, B, F).

    Laid out as (B, N·F) for one `nn.BatchNorm1d(N·F)`: each member normalises over its own
    activations only, as N separate `BatchNorm1d(F)` would.
    """

    def __init__(self, members: int, features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(members * features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members, batch, features = x.shape
        flat = self.norm(x.permute(1, 0, 2).reshape(batch, members * features))
        return flat.reshape(batch, members, features).permute(1, 0, 2)


def _linear(in_features: int, out_features: int, members: int) -> nn.Module:
    if members == 1:
        return nn.Linear(in_features, out_features)
    return MemberLinear(members, in_features, out_features)
