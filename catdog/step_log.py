"""steps.csv: one row per optimizer step, for what happens inside an epoch.

    step          global step, 1-based
    epoch         epochs done after this step (fractional: 0.25 is a quarter of the first)
    rows          the batch's photos (the last batch of an epoch may be smaller)
    loss          the batch's mean loss, as the epoch's train_loss averages it (weighted by rows)
    lr            the step's learning rate
    grad_norm     ‖g‖₂ of all gradients together (every STATS_EVERY steps; blank between)
    update_ratio  ‖Δw‖₂ / ‖w‖₂ of the step's update (same steps)

The loss and lr are numbers the loop already has, so they cost a row write per step. The two
norms need a pass over the gradients and a copy of the weights (taken after the step before),
so they are measured every STATS_EVERY steps: `scripts/bench_steps.py` measures the cost.
"""

import csv
import math
from pathlib import Path
from typing import IO, Any

import torch

from catdog import distributed

STEPS = "steps.csv"
FIELDS = ["step", "epoch", "rows", "loss", "lr", "grad_norm", "update_ratio"]
STATS_EVERY = 20


def read_steps(path: Path) -> list[dict[str, float]]:
    """steps.csv's rows as numbers; a blank norm (a step without stats) reads as NaN."""
    with path.open(newline="") as file:
        return [
            {k: float(v) if v != "" else math.nan for k, v in row.items()}
            for row in csv.DictReader(file)
        ]


class StepLog:
    """The observer that writes steps.csv (rank 0 only), trimmed to the checkpoint on resume."""

    def __init__(self, run_dir: Path, every: int = STATS_EVERY) -> None:
        self.path = run_dir / STEPS
        self.every = every
        self.file: IO[str] | None = None
        self.writer: Any = None
        self.before: list[torch.Tensor] | None = None

    def _open(self, first_step: int) -> None:
        """Keep the rows of steps before `first_step` (a resumed run redoes the rest)."""
        kept: list[dict[str, str]] = []
        if self.path.exists():
            with self.path.open(newline="") as file:
                kept = [row for row in csv.DictReader(file) if int(row["step"]) < first_step]
        self.file = self.path.open("w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=FIELDS)
        self.writer.writeheader()
        self.writer.writerows(kept)

    def after_step(self, run: Any, loss: float, lr: float) -> None:
        if not distributed.is_main():
            return
        per_epoch = len(run.batches)
        progress = run.progress
        step = progress.epoch * per_epoch + progress.step
        if self.file is None:
            self._open(step)
        batch = run.batch_size
        rows = min(batch, len(run.data.train_indices) - (progress.step - 1) * batch)
        row: dict[str, Any] = {
            "step": step,
            "epoch": progress.epoch + progress.step / per_epoch,
            "rows": rows,
            "loss": loss,
            "lr": lr,
            "grad_norm": "",
            "update_ratio": "",
        }
        parameters = [p for p in run.model.parameters() if p.requires_grad]
        if step % self.every == 0:
            grads = [p.grad for p in parameters if p.grad is not None]
            if grads:
                row["grad_norm"] = float(torch.nn.utils.get_total_norm(grads))
            if self.before is not None:
                with torch.no_grad():
                    change = torch.nn.utils.get_total_norm(
                        [p - b for p, b in zip(parameters, self.before, strict=True)]
                    )
                    size = torch.nn.utils.get_total_norm(self.before)
                row["update_ratio"] = float(change / size) if float(size) > 0 else ""
            self.before = None
        if (step + 1) % self.every == 0:  # the weights before the next measured step
            self.before = [p.detach().clone() for p in parameters]
        self.writer.writerow(row)

    def after_epoch(self, run: Any, row: dict[str, float]) -> None:
        if self.file is not None:
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
