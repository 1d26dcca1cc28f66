"""What watches a run while it trains: per-step and per-epoch records beside metrics.csv.

The loop calls every observer after each optimizer step and after each epoch's row is written,
and closes them when the run ends (also on error). An observer may raise one of
`catdog.errors`' errors to end the run (a stuck run, say). Each one the config asks for is made
here, so the loop itself names none of them.

Under DDP every rank has the same observers and sees the same global numbers (the batch loss
is all-reduced, the epoch's row merged), so a check that ends the run ends it on every rank at
once; an observer that writes files writes them on rank 0 alone (`distributed.is_main()`).
"""

from typing import TYPE_CHECKING, Protocol

from catdog import distributed

if TYPE_CHECKING:
    from catdog.train import Run


class Observer(Protocol):
    def after_step(self, run: "Run", loss: float, lr: float) -> None:
        """After optimizer step `run.progress.step` (1-based within the epoch) took `loss`."""

    def after_epoch(self, run: "Run", row: dict[str, float]) -> None:
        """After the epoch's metrics row (METRICS_FIELDS) is recorded and checkpointed."""

    def close(self) -> None:
        """The run ended, finished or not: flush and release files."""


def observers_for(run: "Run") -> list[Observer]:
    """The observers `run.config` asks for, in the order they are called, each made before
    the run's first (or, resumed, next) step."""
    from catdog.step_log import StepLog
    from catdog.stuck import StuckWatch

    config, run_dir = run.config, run.run_dir
    observers: list[Observer] = [StepLog(run_dir), StuckWatch(run_dir)]
    if config.output.tensorboard and distributed.is_main():
        from catdog.tensorboard import TensorBoardObserver

        observers.append(TensorBoardObserver(run_dir))
    if config.train.trajectory is not None and distributed.is_main():
        from catdog.trajectory import Trajectory

        # Opened before the first step, so θ₀ is its first row; a resume continues it.
        steps = len(run.batches)
        observers.append(
            Trajectory.open(
                run_dir,
                config.train.trajectory,
                run.model,
                step=run.progress.epoch * steps + run.progress.step,
                total_steps=config.train.epochs * steps,
            )
        )
    return observers
