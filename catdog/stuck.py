"""The saturated-sigmoid plateau: a run under MSE whose outputs have all gone to 0 or 1.

When the steps are too large, the logits z grow until σ(z) is 0 or 1 for every photo. Then
each photo's MSE (y - σ(z))² is 0 or 1, so the loss is the share of photos on the wrong side,
0.5 at chance, and its gradient 2(σ(z) - y)·σ(z)(1 - σ(z)) is ~0: nothing moves it again. An
untrained but unsaturated network sits near σ(z) = 0.5, an MSE of 0.25, so a slow learner is
never mistaken for this: only saturation puts both losses at 0.5 with chance accuracy.

`stuck_message` looks at the last epochs' metrics rows and returns the warning, or None.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from catdog.errors import Stuck

PLATEAU_EPOCHS = 2
"""Epochs in a row at the plateau before a run is called stuck."""
LOSS_TOLERANCE = 0.02
ACCURACY_TOLERANCE = 0.02


def plateau_loss(label_smoothing: float = 0.0) -> float:
    """The MSE of saturated outputs at chance against targets ε/2 and 1 - ε/2: half the photos
    are off by ε/2 and half by 1 - ε/2, so ((ε/2)² + (1 - ε/2)²) / 2 (0.5 with hard labels)."""
    e = label_smoothing / 2
    return (e**2 + (1 - e) ** 2) / 2


def stuck_message(
    rows: Sequence[dict[str, float]],
    loss: str,
    lr: float | None = None,
    chance: float = 0.5,
    label_smoothing: float = 0.0,
    epochs: int = PLATEAU_EPOCHS,
) -> str | None:
    """The warning if the last `epochs` rows all sit at the plateau, else None.

    `chance` is the validation split's majority share (the accuracy of a constant guess).
    Only MSE has this plateau; BCE's gradient at a saturated wrong output is ±1, not 0.
    """
    if loss != "mse" or len(rows) < epochs:
        return None
    recent = rows[-epochs:]
    train_plateau = plateau_loss(label_smoothing)
    if not all(
        abs(row["train_loss"] - train_plateau) < LOSS_TOLERANCE
        and abs(row["val_loss"] - 0.5) < LOSS_TOLERANCE
        and abs(row["val_accuracy"] - chance) < ACCURACY_TOLERANCE
        for row in recent
    ):
        return None
    last = recent[-1]
    smaller = f" (e.g. --set optimizer.lr={lr / 100:g})" if lr else ""
    at = f"optimizer.lr={lr:g} is" if lr else "the steps are"
    return (
        f"stuck: train and validation loss {last['train_loss']:.4f} and {last['val_loss']:.4f}, "
        f"accuracy {last['val_accuracy']:.2%} (chance) for {epochs} epochs: {at} so large that "
        "the sigmoid outputs saturated at 0 or 1, where the MSE gradient vanishes; "
        f"use a smaller lr{smaller}, or loss: bce, whose gradient does not vanish there"
    )


class StuckWatch:
    """The observer: warns once when the run reaches the plateau, and ends it under
    `train.stop_when_stuck` by raising `Stuck` (on every rank: the rows are merged ones)."""

    def __init__(self, run_dir: Path) -> None:
        from catdog.runs import run_metrics

        self.rows = run_metrics(run_dir)  # a resumed run's epochs so far
        self.warned = False

    def after_step(self, run: Any, loss: float, lr: float) -> None:
        pass

    def after_epoch(self, run: Any, row: dict[str, float]) -> None:
        self.rows.append(row)
        config = run.config
        labels = run.data.images.labels[run.data.val_indices]
        chance = max(float(labels.mean()), 1 - float(labels.mean())) if len(labels) else 0.5
        lr = config.optimizer.lr if "lr" in config.optimizer.hyperparameters else None
        message = stuck_message(self.rows, config.loss, lr, chance, config.train.label_smoothing)
        if message is None or self.warned:
            return
        self.warned = True
        if getattr(config.train, "stop_when_stuck", True):
            raise Stuck(f"{message}. Ended early (train.stop_when_stuck: true)")
        from catdog.builders import note

        note(f"warning: {message}")

    def close(self) -> None:
        pass
