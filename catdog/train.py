"""The training loop: set up, then epochs of mini-batches, each ended by measuring, recording and
checkpointing.

One epoch visits the training split once, in an order fixed by (seed, epoch). After each epoch the
validation split is measured, a line is printed, a row goes to `metrics.csv`, and `last.pt` (and
`best.pt` when validation accuracy improved) are written. Ctrl-C or SIGTERM finish the current
step and write a resumable `last.pt`; a NaN or infinite loss stops the run and keeps the last good
checkpoint.

Under torchrun (see `catdog.distributed`) each process trains on its share of every global batch
in DistributedDataParallel, so the steps are those of one process with the same global batch;
validation is split over the ranks and gathered; rank 0 alone writes files and prints.
"""

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from catdog import distributed, runs, stopping
from catdog.batches import Batches, zca_whitening
from catdog.builders import (
    PreparedData,
    build_model,
    check_memory_fits,
    make_optimizer,
    note,
    prepare_data,
    resolve_device,
)
from catdog.checkpoint import save_checkpoint
from catdog.config import Config, config_dict
from catdog.errors import Diverged, Interrupted
from catdog.header import print_header
from catdog.losses import LOSSES, Loss
from catdog.metrics import Measurement, measure, merge_measurements
from catdog.observers import Observer, observers_for
from catdog.train_step import learning_rate, train_step

__all__ = ["Diverged", "Interrupted", "Progress", "Summary", "train"]


@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint so a resume continues exactly."""

    epoch: int = 0  # epochs completed
    step: int = 0  # batches completed in the current epoch
    loss_sum: float = 0.0  # sum of batch loss × batch size so far this epoch
    loss_count: int = 0
    best_accuracy: float = -1.0
    best_epoch: int = 0
    stale_epochs: int = 0
    elapsed: float = 0.0  # training seconds of the epochs and steps done so far

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Summary:
    run_dir: Path
    epochs: int
    best_accuracy: float
    best_epoch: int
    final: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Run:
    """Everything one training run holds while it trains."""

    config: Config
    run_dir: Path
    device: torch.device
    data: PreparedData
    model: torch.nn.Module  # the plain network: checkpoints and evaluation
    network: torch.nn.Module  # what trains: `model`, or `model` in DistributedDataParallel
    optimizer: torch.optim.Optimizer
    batches: Batches
    loss_fn: Loss
    progress: Progress
    observers: list[Observer] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return self.batches.batch_size


# --- the loop -------------------------------------------------------------------------------


def train(
    config: Config,
    run_dir: Path,
    checkpoint: dict[str, Any] | None = None,
    data: PreparedData | None = None,
    observers: Sequence[Observer] = (),
) -> Summary:
    """Train per `config` into `run_dir`; continue from `checkpoint` (its `last.pt`) if given.

    `observers` watch it besides those the config asks for (a tune's pruning reporter, say).
    Inside a process group (torchrun) every rank calls this with the same arguments. One
    process at a time trains a run folder (rank 0 holds it): a second is refused in one line.
    """
    with runs.held(run_dir, holder=distributed.is_main()):
        return _train(config, run_dir, checkpoint, data, observers)


def _train(
    config: Config,
    run_dir: Path,
    checkpoint: dict[str, Any] | None,
    data: PreparedData | None,
    observers: Sequence[Observer],
) -> Summary:
    run = set_up(config, run_dir, checkpoint, data)
    print_header(run)  # device, photos, network, optimizer, run folder (rank 0's)
    run.observers.extend(observers)
    progress = run.progress
    resumed_at = progress.elapsed
    started = time.perf_counter()
    with stopping.stop_on_signals() as stop, _closing(run.observers):
        while progress.epoch < config.train.epochs:
            epoch_started = time.perf_counter()
            lr = train_epoch(run, stop, lambda: resumed_at + time.perf_counter() - started)
            end_epoch(run, lr, time.perf_counter() - epoch_started, started, resumed_at)
            patience = config.train.early_stopping
            if patience is not None and progress.stale_epochs >= patience:
                note(f"early stopping: no better validation accuracy for {patience} epochs")
                break
    # A signal after the last step's check (while the last epoch was measured and saved, say)
    # is still honoured: the run is complete, so only the curves are skipped.
    late = int(distributed.max_across(stop.get("signal", 0)))
    distributed.barrier()  # rank 0 has written everything before any rank returns
    if late:
        raise stopping.complete_but_curves(late, "after the last epoch", run_dir, progress.epoch)
    rows = runs.run_metrics(run_dir)
    if distributed.is_main():  # under DDP one writer: rank 0
        stopping.draw_curves(run_dir, progress.epoch)
    return Summary(
        run_dir,
        progress.epoch,
        progress.best_accuracy,
        progress.best_epoch,
        rows[-1] if rows else {},
        resumed_at + time.perf_counter() - started,
    )


def set_up(
    config: Config,
    run_dir: Path,
    checkpoint: dict[str, Any] | None,
    data: PreparedData | None,
) -> Run:
    """Device, photos, network, optimizer and batches; restored from `checkpoint` if given."""
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    device = distributed.device() if distributed.active() else resolve_device(config.device)
    if distributed.active():
        distributed.check_distributed(config, distributed.world_size(), device)
    check_memory_fits(config, device)
    if data is None:
        saved = _saved_normalization(checkpoint)
        with distributed.main_first():  # rank 0 decodes and caches; the others read its cache
            data = prepare_data(config, config.train.progress, normalization=saved)
    elif checkpoint is not None:
        data.mean, data.std = _saved_normalization(checkpoint)

    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    optimizer = make_optimizer(config, model)
    progress = Progress()
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        progress = Progress(**checkpoint["progress"])
        distributed.restore_rng_state(
            checkpoint["rng"], device, config.seed, progress.epoch, progress.step
        )
    else:
        if model.whitening is not None:
            whitening = zca_whitening(
                data.images.pixels,
                data.train_indices,
                data.mean,
                data.std,
                config.data.zca_epsilon,
            )
            model.whitening.set(*(torch.from_numpy(array) for array in whitening))
        if distributed.is_main():
            runs.write_config(config, run_dir)
        if distributed.world_size() > 1:
            # Same initial weights everywhere (seeded above), but each rank's own dropout masks.
            torch.manual_seed(distributed.rank_seed(config.seed, distributed.rank()))
    if distributed.is_main():
        runs.keep_metrics_rows(run_dir / runs.METRICS, progress.epoch)

    batch_size = config.train.batch_size
    batches = Batches(
        data.images.pixels,
        data.images.labels,
        data.train_indices,
        len(data.train_indices) if batch_size == "full" else batch_size,
        data.mean,
        data.std,
        device=device,
        shuffle=True,
        seed=config.seed,
        augment=config.data.augment,
        rank=distributed.rank(),
        world_size=distributed.world_size(),
    )
    # DDP averages the gradients in backward; `model` stays the plain network.
    network = distributed.wrap(model) if distributed.active() else model
    model.train()
    run = Run(
        config, run_dir, device, data, model, network, optimizer, batches,
        LOSSES[config.loss], progress,
    )  # fmt: skip
    run.observers = observers_for(run)
    return run


def train_epoch(run: Run, stop: dict[str, int], elapsed: Any) -> float:
    """The rest of the current epoch's steps; returns the last step's lr.

    `elapsed()` is the run's training seconds so far, for the checkpoint an interruption writes.
    """
    config, progress, optimizer = run.config, run.progress, run.optimizer
    epoch, steps, world = progress.epoch, len(run.batches), distributed.world_size()
    members = config.model.ensemble
    smoothing = config.train.label_smoothing
    bar = tqdm(
        total=steps,
        initial=progress.step,
        desc=f"epoch {epoch + 1}/{config.train.epochs}",
        disable=not (config.train.progress and distributed.is_main()),
        leave=False,
        dynamic_ncols=True,
    )
    evaluations_before = getattr(optimizer, "evaluations", None)
    bar_started = time.perf_counter()
    lr = config.optimizer.lr
    for x, y in run.batches.epoch(epoch, start=progress.step):
        lr = learning_rate(
            config.train.schedule, config.optimizer.lr, epoch + progress.step / steps,
            config.train.epochs,
        )  # fmt: skip
        for group in optimizer.param_groups:
            if "lr" in group:
                group["lr"] = lr
        if smoothing:
            y = y * (1 - smoothing) + smoothing / 2
        rows = min(run.batch_size, len(run.data.train_indices) - progress.step * run.batch_size)
        # The loss is the members' mean; backward on their sum gives each member exactly the
        # gradient it would get training alone, so lr means the same for any ensemble size.
        # `len(y) * world / rows` is 1 in one process; see `train_step`.
        weight = members * len(y) * world / rows
        loss = float(
            train_step(run.network, optimizer, run.loss_fn, x, y, weight, config.train.precision)
        )
        # One all-reduce per step (none in one process): the global batch's loss, and
        # whether any rank was asked to stop, so that all ranks stop at the same step.
        loss_sum, count, asked_to_stop = distributed.sum_across(
            [loss * len(y), len(y), float(bool(stop))]
        )
        if not math.isfinite(loss_sum):
            raise stopping.diverged(
                run.run_dir,
                progress.epoch,
                progress.step,
                loss_sum / count,
                lr,
                config.optimizer.lr,
            )
        progress.step += 1
        progress.loss_sum += loss_sum
        progress.loss_count += int(count)
        bar.update(1)
        postfix = {"loss": f"{progress.loss_sum / progress.loss_count:.4f}"}
        if evaluations_before is not None:
            seconds = max(time.perf_counter() - bar_started, 1e-9)
            postfix["evals/s"] = f"{(optimizer.evaluations - evaluations_before) / seconds:.0f}"
        bar.set_postfix(postfix, refresh=False)
        for observer in run.observers:
            observer.after_step(run, loss_sum / max(count, 1), lr)
        if asked_to_stop:
            bar.close()
            raise _interrupted(run, stop, elapsed())
    bar.close()
    return lr


def end_epoch(run: Run, lr: float, seconds: float, started: float, resumed_at: float) -> None:
    """Measure the validation split, then record the epoch: a metrics row, a line, checkpoints."""
    config, progress = run.config, run.progress
    val = measure_validation(run)
    epoch = progress.epoch + 1
    train_loss = progress.loss_sum / max(progress.loss_count, 1)
    row = {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_loss": val.loss,
        "val_accuracy": val.accuracy,
        "lr": lr,
        "seconds": seconds,
        "elapsed": resumed_at + time.perf_counter() - started,
    }
    improved = val.count == 0 or val.accuracy > progress.best_accuracy
    if improved:
        progress.best_accuracy = val.accuracy if val.count else float("nan")
        progress.best_epoch = epoch
        progress.stale_epochs = 0
    else:
        progress.stale_epochs += 1
    progress.epoch, progress.step = epoch, 0
    progress.loss_sum, progress.loss_count = 0.0, 0
    progress.elapsed = row["elapsed"]
    state = checkpoint_payload(run)  # every rank: it gathers the ranks' random streams
    if not distributed.is_main():
        return
    runs.append_metrics_row(run.run_dir / runs.METRICS, row)
    best = [run.run_dir / runs.BEST] if improved else []
    save_checkpoint(state, run.run_dir / runs.LAST, *best)  # best.pt: a link, not a second write
    measured = f"val_loss {val.loss:.4f}  val_acc {val.accuracy:.2%}" if val.count else "no val"
    print(
        f"epoch {epoch:>3}/{config.train.epochs}  train_loss {train_loss:.4f}  {measured}  "
        f"{seconds:.1f}s",
        flush=True,
    )
    for observer in run.observers:
        observer.after_epoch(run, row)


# --- measuring, checkpointing, stopping -------------------------------------------------------


def measure_validation(run: Run) -> Measurement:
    """The validation measurement; under DDP each rank measures every world-th photo, then all
    ranks gather the parts and merge them, so every rank gets the whole split's numbers."""
    rows = run.data.val_indices
    if distributed.world_size() > 1:
        rows = np.sort(rows)[distributed.rank() :: distributed.world_size()]
    part = measure(
        run.model,
        run.data.images.pixels,
        run.data.images.labels,
        rows,
        run.data.mean,
        run.data.std,
        run.loss_fn,
        run.device,
        batch_size=run.config.eval.batch_size,
        tta=run.config.eval.tta,  # not eval.tta_shift: 50 views of each photo every epoch
    )
    if distributed.world_size() == 1:
        return part
    return merge_measurements(distributed.all_gather(part))


def checkpoint_payload(run: Run) -> dict[str, Any]:
    """The checkpoint; every rank must call it (it gathers the ranks' random states)."""
    config, data = run.config, run.data
    return {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "config": config_dict(config),
        "normalization": {
            "mean": data.mean.tolist(),
            "std": data.std.tolist(),
            "image_size": config.data.image_size,
            "grayscale": config.data.grayscale,
            "in_features": config.data.in_features,
        },
        "progress": run.progress.as_dict(),
        "rng": distributed.rng_state(run.device),
    }


@contextmanager
def _closing(observers: list[Observer]) -> Iterator[None]:
    try:
        yield
    finally:
        for observer in observers:
            observer.close()


def _interrupted(run: Run, stop: dict[str, int], elapsed: float) -> Interrupted:
    """Write a resumable `last.pt` at this step, and the error that ends the run."""
    signum = distributed.max_across(stop.get("signal", 0))  # some rank's signal
    run.progress.elapsed = elapsed
    state = checkpoint_payload(run)
    if distributed.is_main():
        save_checkpoint(state, run.run_dir / runs.LAST)
    distributed.barrier()  # no rank exits before last.pt is on disk
    return stopping.interrupted(signum, run.run_dir, run.progress.epoch, run.progress.step)


def _saved_normalization(
    checkpoint: dict[str, Any] | None,
) -> tuple[np.ndarray, np.ndarray] | None:
    if checkpoint is None:
        return None
    saved = checkpoint["normalization"]
    return (
        np.asarray(saved["mean"], dtype=np.float32),
        np.asarray(saved["std"], dtype=np.float32),
    )
