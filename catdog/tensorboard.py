"""TensorBoard event files for a run (`output.tensorboard: true`), written into the run folder.

Per step: the batch's training loss, the lr, and the norms of the gradient and of the update the
optimizer just made (tags `step/...`, x = global step). Per epoch: the `metrics.csv` row (tags
`epoch/...`, x = epoch). Every few epochs: histograms of every weight and of the optimizer's
state of that weight's shape (momentum's velocity, Adam's moments). At the end: the config as
hyperparameters with the final metrics, for TensorBoard's HParams view.

Because the events sit in the run folder itself, `tensorboard --logdir runs` shows every run by
its folder's name, and `tensorboard --logdir comparisons/NAME` a comparison's runs side by side.
TensorBoard is an optional extra: `pip install 'catdog[tensorboard]'`.
"""

from pathlib import Path
from typing import Any

import torch

from catdog.errors import ConfigError
from catdog.rounding import rounded_row

HISTOGRAM_EVERY = 5  # epochs; and the first
INSTALL = "pip install 'catdog[tensorboard]'"


def require_tensorboard() -> None:
    """One line saying how to install TensorBoard where it is missing (check before training)."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"output.tensorboard: TensorBoard is not installed; install it with: {INSTALL} "
            "(or set output.tensorboard: false)"
        ) from None


class TensorBoardLog:
    """The loop's view of TensorBoard: open, then step/epoch as training goes, close at the end."""

    def __init__(self, writer: Any, model: torch.nn.Module, hparams: dict[str, Any]) -> None:
        self.writer = writer
        self.names = [name for name, _ in model.named_parameters()]
        self.parameters = [parameter for _, parameter in model.named_parameters()]
        self.hparams = hparams
        self.previous = [parameter.detach().clone() for parameter in self.parameters]

    @classmethod
    def open(
        cls, run_dir: Path, config: Any, model: torch.nn.Module, start_step: int = 0
    ) -> "TensorBoardLog":
        """Write into `run_dir`; a resumed run (`start_step` > 0) drops the steps it redoes."""
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        from catdog.config import config_dict

        writer = SummaryWriter(log_dir=str(run_dir), purge_step=start_step or None)
        return cls(writer, model, hyperparameters(config_dict(config)))

    def step(self, step: int, scalars: dict[str, float]) -> None:
        """After optimizer step `step` (from 1): `scalars`, and the gradient and update norms."""
        for name, value in scalars.items():
            self.writer.add_scalar(f"step/{name}", value, step)
        with torch.no_grad():
            gradients = [p.grad for p in self.parameters if p.grad is not None]
            if gradients:
                self.writer.add_scalar("step/grad_norm", _norm(gradients), step)
            current = [p.detach() for p in self.parameters]
            update = torch._foreach_sub(current, self.previous)
            self.writer.add_scalar("step/update_norm", _norm(update), step)
            torch._foreach_copy_(self.previous, current)

    def epoch(
        self, epoch: int, row: dict[str, float], optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        """After epoch `epoch` (from 1): its `metrics.csv` row; histograms every few epochs."""
        for name, value in row.items():
            if name != "epoch":
                self.writer.add_scalar(f"epoch/{name}", value, epoch)
        if epoch == 1 or epoch % HISTOGRAM_EVERY == 0:
            self.histograms(epoch, optimizer)
        self.writer.flush()

    def histograms(self, epoch: int, optimizer: torch.optim.Optimizer | None) -> None:
        for name, parameter in zip(self.names, self.parameters, strict=True):
            self.writer.add_histogram(f"weights/{name}", parameter.detach().cpu(), epoch)
            state = optimizer.state.get(parameter, {}) if optimizer is not None else {}
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == parameter.shape:
                    self.writer.add_histogram(
                        f"optimizer/{key}/{name}", value.detach().cpu(), epoch
                    )

    def close(self, final: dict[str, float]) -> None:
        """The hyperparameters with the final metrics (`hparams/...`), then close the file."""
        from torch.utils.tensorboard.summary import hparams

        metrics = {f"hparams/{name}": float(value) for name, value in final.items()}
        experiment, start, end = hparams(self.hparams, metrics)
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, 0)
        self.writer.close()


def hyperparameters(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config flattened to dotted keys with values TensorBoard takes (bool, number, str)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(hyperparameters(value, f"{prefix}{key}."))
        elif isinstance(value, bool | int | float | str):
            flat[f"{prefix}{key}"] = value
        else:  # None, lists: as YAML writes them
            flat[f"{prefix}{key}"] = "null" if value is None else str(value)
    return flat


def _norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors))))


class TensorBoardObserver:
    """The loop's observer (`catdog.observers`) that writes a run's TensorBoard events (rank 0)."""

    def __init__(self, run_dir: Path) -> None:
        require_tensorboard()
        self.run_dir = run_dir
        self.log: TensorBoardLog | None = None
        self.run: Any = None
        self.last_row: dict[str, float] = {}

    def after_step(self, run: Any, loss: float, lr: float) -> None:
        step = run.progress.epoch * len(run.batches) + run.progress.step
        if self.log is None:  # the network exists only once the loop runs
            self.run = run
            self.log = TensorBoardLog.open(self.run_dir, run.config, run.model, step)
        self.log.step(step, {"train_loss": loss, "lr": lr})

    def after_epoch(self, run: Any, row: dict[str, float]) -> None:
        if self.log is not None:
            row = rounded_row(row)  # the numbers metrics.csv holds
            self.log.epoch(int(row["epoch"]), row, run.optimizer)
            self.last_row = row

    def close(self) -> None:
        if self.log is None:
            return
        progress = self.run.progress
        final = {f"final_{k}": v for k, v in self.last_row.items() if k not in ("epoch", "lr")}
        final.update(best_val_accuracy=progress.best_accuracy, best_epoch=progress.best_epoch)
        final["epochs"] = progress.epoch
        self.log.close(rounded_row(final))
        self.log = None
