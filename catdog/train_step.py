"""One training step on one batch, and the learning rate it takes at a point of the run.

The training loop calls these once per batch; `catdog lr-find` drives `train_step` too, so it
measures exactly the step training takes.
"""

import math

import torch

from catdog.config import ScheduleConfig
from catdog.losses import Loss
from catdog.optim import step as optimizer_step


def learning_rate(schedule: ScheduleConfig, base_lr: float, progress: float, epochs: int) -> float:
    """The lr at `progress` epochs into a run of `epochs` (fractional: steps count too)."""
    if progress < schedule.warmup_epochs:
        return base_lr * (progress + 1e-12) / schedule.warmup_epochs
    if schedule.name == "cosine":
        span = max(epochs - schedule.warmup_epochs, 1e-12)
        done = min((progress - schedule.warmup_epochs) / span, 1.0)
        floor = base_lr * schedule.min_lr_fraction
        return floor + (base_lr - floor) * 0.5 * (1 + math.cos(math.pi * done))
    if schedule.name == "step":
        return base_lr * schedule.gamma ** int(progress // schedule.step_epochs)
    return base_lr


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Loss,
    x: torch.Tensor,
    y: torch.Tensor,
    weight: float = 1.0,
    precision: str = "fp32",
) -> torch.Tensor:
    """One optimizer step on one batch; returns the batch loss (a 0-d tensor).

    With `precision` bf16 the forward pass runs under autocast (its matrix products in
    bfloat16, which backward follows); the loss is taken in float32 and the optimizer updates
    the float32 weights, so only the products' rounding changes.

    Backward runs on `weight` * loss. Under DDP, rank r holds n_r of a global batch's N rows and
    its loss L_r is the mean over those; DDP averages the ranks' gradients, so with weight
    w_r = n_r·W/N the step takes (1/W)·Σ_r w_r·∇L_r = (1/N)·Σ_i ∇loss_i, the global batch's mean
    gradient, however unevenly the batch splits. A rank with no rows backpropagates a zero (it
    must still join DDP's gradient all-reduce) and reports a loss of 0.
    """
    if not getattr(optimizer, "uses_gradients", True):  # torch's own optimizers lack the flag
        # Gradient-free (the genetic algorithm): the optimizer only ever evaluates the loss.
        # Eval mode, so dropout does not blur fitness and batch-norm statistics are not
        # updated once per member evaluated.
        model.eval()
        try:
            with torch.no_grad():
                return torch.as_tensor(optimizer.step(lambda: loss_fn(model(x), y)))
        finally:
            model.train()

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, torch.bfloat16, enabled=precision == "bf16"):
            logits = model(x)
        logits = logits.float()
        loss = loss_fn(logits, y) if len(y) else logits.sum()
        (loss if weight == 1.0 else loss * weight).backward()
        return loss

    return optimizer_step(optimizer, closure)
