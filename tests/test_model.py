"""The MLP alone and as a batched ensemble, checked against separate float64 networks."""

import numpy as np
import pytest
import torch
from torch import nn

from catdog.batches import to_inputs
from catdog.losses import LOSSES
from catdog.metrics import predict_pixels
from catdog.model import MLP
from tests.helpers import member


def test_one_member_is_the_plain_linear_network() -> None:
    model = MLP(12, (5, 3))
    assert list(model.state_dict()) == [
        f"layers.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")
    ]
    assert all(isinstance(model.layers[i], nn.Linear) for i in (0, 2, 4))
    assert model(torch.randn(7, 3, 2, 2)).shape == (7,)


def test_each_member_computes_its_own_network() -> None:
    torch.manual_seed(0)
    ensemble = MLP(12, (5, 3), members=4).to(torch.float64)
    x = torch.randn(7, 3, 2, 2, dtype=torch.float64)
    logits = ensemble(x)
    assert logits.shape == (7, 4)
    for k in range(4):
        torch.testing.assert_close(logits[:, k], member(ensemble, k)(x), rtol=0, atol=1e-12)
    expected = torch.stack([torch.sigmoid(member(ensemble, k)(x)) for k in range(4)]).mean(0)
    torch.testing.assert_close(ensemble.probability(x), expected, rtol=0, atol=1e-12)


def test_members_start_apart_within_the_linear_init_bounds() -> None:
    torch.manual_seed(0)
    ensemble = MLP(100, (20,), members=3)
    first = ensemble.layers[0]
    assert first.weight.abs().max() <= 1 / 100**0.5
    assert first.weight.abs().max() > 0.9 / 100**0.5  # uniform fills the whole range
    assert not torch.equal(first.weight[0], first.weight[1])
    assert not torch.equal(first.bias[1], first.bias[2])


def test_member_batch_norm_normalises_each_member_over_its_own_batch() -> None:
    torch.manual_seed(0)
    ensemble = MLP(6, (4,), batch_norm=True, members=3).to(torch.float64).train()
    x = torch.randn(10, 6, dtype=torch.float64)
    hidden = ensemble.layers[1](ensemble.layers[0](x.expand(3, 10, 6)))
    first = ensemble.layers[0](x.expand(3, 10, 6))
    for k in range(3):
        reference = nn.BatchNorm1d(4).to(torch.float64).train()
        torch.testing.assert_close(hidden[k], reference(first[k]), rtol=0, atol=1e-12)


def test_dropout_masks_differ_between_members() -> None:
    torch.manual_seed(0)
    ensemble = MLP(50, (8,), input_dropout=0.5, members=2).train()
    x = torch.ones(1, 50)
    dropped = ensemble.layers[0](x.expand(2, 1, 50))
    assert not torch.equal(dropped[0] == 0, dropped[1] == 0)


@pytest.mark.parametrize("name", ["mse", "bce"])
def test_ensemble_loss_is_the_mean_of_the_members_losses(name: str) -> None:
    torch.manual_seed(0)
    logits = torch.randn(9, 4, dtype=torch.float64)
    labels = (torch.rand(9, dtype=torch.float64) > 0.5).double()
    loss = LOSSES[name]
    expected = torch.stack([loss(logits[:, k], labels) for k in range(4)]).mean()
    torch.testing.assert_close(loss(logits, labels), expected, rtol=0, atol=1e-12)
    # Closed form for BCE member 0: mean of softplus(z) - y z.
    z = logits[:, 0]
    bce0 = (torch.nn.functional.softplus(z) - labels * z).mean()
    torch.testing.assert_close(LOSSES["bce"](z, labels), bce0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("tta", [False, True])
def test_prediction_is_the_logit_of_the_members_mean_probability(tta: bool) -> None:
    torch.manual_seed(0)
    ensemble = MLP(3 * 4 * 4, (6,), members=3).eval()
    pixels = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    mean, std = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)
    logits = predict_pixels(ensemble, pixels, mean, std, torch.device("cpu"), tta=tta)
    assert logits.shape == (5,)
    views = [pixels, pixels.flip(-1)] if tta else [pixels]
    p = torch.stack([torch.sigmoid(ensemble(_inputs(v, mean, std))) for v in views]).mean((0, 2))
    torch.testing.assert_close(torch.sigmoid(logits), p, rtol=0, atol=1e-6)


def test_single_network_logits_pass_through_untouched() -> None:
    torch.manual_seed(0)
    model = MLP(3 * 4 * 4, (6,)).eval()
    pixels = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    mean, std = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)
    logits = predict_pixels(model, pixels, mean, std, torch.device("cpu"))
    assert torch.equal(logits, model(to_inputs(pixels, mean, std)))


def _inputs(pixels: torch.Tensor, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    unit = pixels.double() / 255
    m = torch.as_tensor(mean, dtype=torch.float64)[:, None, None]
    s = torch.as_tensor(std, dtype=torch.float64)[:, None, None]
    return ((unit - m) / s).flatten(1).float()


def test_zero_members_is_refused() -> None:
    with pytest.raises(ValueError, match="members=0"):
        MLP(4, (2,), members=0)
