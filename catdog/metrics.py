"""Loss, accuracy and confusion matrix of a model over a set of decoded photos."""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from catdog.batches import to_inputs
from catdog.losses import Loss
from catdog.views import gather_views, view_count, view_sources


@dataclass
class Measurement:
    loss: float
    accuracy: float
    count: int
    confusion: list[list[int]]
    """confusion[true][predicted], 0 = cat, 1 = dog."""
    probabilities: np.ndarray

    def as_dict(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "count": self.count,
            "confusion": self.confusion,
            "confusion_labels": ["cat", "dog"],
        }


@torch.no_grad()
def predict_pixels(
    model: nn.Module,
    pixels: np.ndarray | torch.Tensor,
    mean: np.ndarray,
    std: np.ndarray,
    device: torch.device,
    tta: bool = False,
    tta_shift: int = 0,
) -> torch.Tensor:
    """Logits (B,) for uint8 photos (B, C, S, S), averaged over test-time views if asked.

    Probabilities are averaged, not logits: an ensemble's (B, N) logits become
    logit((1/N) Σ_k σ(z_k)). With `tta` each photo's mirror joins that mean, with `tta_shift`
    its shifts of up to that many pixels (`catdog.views`): the mean runs over every (view,
    member) pair. A single network without views returns its own logits unchanged.
    """
    batch = torch.as_tensor(pixels)
    if not tta and not tta_shift:
        logits = model(to_inputs(batch, mean, std, device))
        return logits if logits.ndim == 1 else torch.logit(_mean_probability(logits), eps=1e-7)
    sources = view_sources(batch.shape[-1], tta, tta_shift).to(batch.device)
    logits = model(to_inputs(gather_views(batch, sources), mean, std, device))
    probability = torch.sigmoid(logits).reshape(len(batch), -1).mean(dim=1)
    return torch.logit(probability, eps=1e-7)


def _mean_probability(logits: torch.Tensor) -> torch.Tensor:
    """P(dog) per photo: σ(z) for (B,) logits, the members' mean σ(z_k) for (B, N)."""
    probability = torch.sigmoid(logits)
    return probability if logits.ndim == 1 else probability.mean(dim=1)


@torch.no_grad()
def measure(
    model: nn.Module,
    pixels: np.ndarray,
    labels: np.ndarray,
    indices: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    loss_fn: Loss,
    device: torch.device,
    batch_size: int = 1024,
    tta: bool = False,
    tta_shift: int = 0,
) -> Measurement:
    """Evaluate `model` on rows `indices` of `pixels`, in eval mode, restoring its mode after."""
    was_training = model.training
    model.eval()
    indices = np.sort(np.asarray(indices, dtype=np.int64))
    logits = []
    # batch_size counts forward rows: with V views a batch holds batch_size // V photos.
    photos = max(1, batch_size // view_count(tta, tta_shift, pixels.shape[-1]))
    for start in range(0, len(indices), photos):
        rows = indices[start : start + photos]
        logit = predict_pixels(model, pixels[rows], mean, std, device, tta, tta_shift)
        logits.append(logit.float().cpu())
    model.train(was_training)
    if not logits:
        return Measurement(float("nan"), float("nan"), 0, [[0, 0], [0, 0]], np.empty(0, np.float32))
    all_logits = torch.cat(logits)
    targets = torch.as_tensor(labels[indices], dtype=torch.float32)
    loss = float(loss_fn(all_logits, targets))
    predicted = (all_logits > 0).long()
    truth = targets.long()
    confusion = torch.zeros(2, 2, dtype=torch.long)
    confusion.index_put_((truth, predicted), torch.ones_like(truth), accumulate=True)
    accuracy = float((predicted == truth).float().mean())
    return Measurement(
        loss, accuracy, len(indices), confusion.tolist(), torch.sigmoid(all_logits).numpy()
    )


def merge_measurements(parts: list[Measurement]) -> Measurement:
    """One measurement from W parts, part r taken on rows r, r + W, r + 2W, ... of the sorted rows.

    loss = Σ_r loss_r·n_r / Σ_r n_r (each part's loss is a mean over its n_r rows), the confusion
    matrices add up, and the probabilities interleave back into sorted-row order.
    """
    count = sum(part.count for part in parts)
    if count == 0:
        return parts[0]
    confusion = np.sum([part.confusion for part in parts], axis=0)
    probabilities = np.empty(count, dtype=np.float32)
    for offset, part in enumerate(parts):
        probabilities[offset :: len(parts)] = part.probabilities
    loss = sum(part.loss * part.count for part in parts if part.count) / count
    # A float32 mean, as `measure` takes it, so the accuracy matches one process to the bit.
    accuracy = float(np.float32(np.trace(confusion)) / np.float32(count))
    return Measurement(loss, accuracy, count, confusion.tolist(), probabilities)
