"""The training loop: epochs of mini-batches, metrics, checkpoints, resume and interruption.

One epoch visits the training split once, in an order fixed by (seed, epoch). After each epoch the
validation split is measured, a line is printed, a row goes to `metrics.csv`, and `last.pt` (and
`best.pt` when validation accuracy improved) are written. Ctrl-C or SIGTERM finish the current
step and write a resumable `last.pt`; a NaN or infinite loss stops the run and keeps the last good
checkpoint.
"""

import csv
import itertools
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from catdog.batches import Augment, Batches, channel_stats
from catdog.checkpoint import load_checkpoint, save_checkpoint
from catdog.config import (
    Config,
    ConfigError,
    ScheduleConfig,
    config_dict,
    optimizer_parameters,
    save_config,
    validate,
)
from catdog.data import DataError, find_photos, stratified_split
from catdog.images import DecodedImages, load_images
from catdog.losses import LOSSES, Loss
from catdog.metrics import measure
from catdog.model import MLP
from catdog.optim import OPTIMIZERS, build_optimizer

METRICS_FIELDS = ["epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds", "elapsed"]


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""


class Interrupted(RuntimeError):
    """Training stopped on a signal after writing a resumable checkpoint."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def note(message: str) -> None:
    """A remark on stderr that does not tear an open progress bar."""
    tqdm.write(message, file=sys.stderr)


# --- data -------------------------------------------------------------------------------


@dataclass
class PreparedData:
    images: DecodedImages
    train_indices: np.ndarray
    val_indices: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @property
    def in_features(self) -> int:
        return int(np.prod(self.images.pixels.shape[1:]))


def prepare_data(config: Config, progress: bool = True) -> PreparedData:
    """Find, decode (once, cached) and split the photos; normalise with the training split."""
    data = config.data
    photos = find_photos(data.root)
    if photos.unlabelled:
        names = ", ".join(p.name for p in photos.unlabelled[:3])
        note(
            f"warning: {len(photos.unlabelled)} files in {data.root} have no cat/dog label "
            f"in their name and were ignored (e.g. {names})"
        )
    images = load_images(
        photos,
        image_size=data.image_size,
        grayscale=data.grayscale,
        cache_dir=Path(data.cache_dir) if data.cache_dir else None,
        workers=data.workers,
        progress=progress,
    )
    if images.skipped:
        names = ", ".join(str(p) for p in images.skipped[:3])
        note(f"warning: skipped {len(images.skipped)} unreadable photos (e.g. {names})")
    train_indices, val_indices = stratified_split(images.labels, data.val_fraction, config.seed)
    if len(train_indices) == 0:
        raise DataError(
            f"{data.root}: no photos left for training; add photos or lower data.val_fraction"
        )
    mean, std = channel_stats(images.pixels, train_indices)
    return PreparedData(images, train_indices, val_indices, mean, std)


# --- building blocks ------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device: {name!r} asked for, but CUDA is not available here; "
                "use device: auto or cpu"
            )
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise ConfigError(
                f"device: {name!r} does not exist; "
                f"this machine has {torch.cuda.device_count()} CUDA devices"
            )
    return torch.device(name)


def optimizer_arguments(config: Config) -> dict[str, Any]:
    """The optimizer's keyword arguments; a seeded optimizer follows the run's seed unless told."""
    arguments = config.optimizer.hyperparameters
    if "seed" in optimizer_parameters(config.optimizer.name):
        arguments.setdefault("seed", config.seed)
    return arguments


def check_population_fits(config: Config, device: torch.device) -> None:
    """Refuse, before any work, a genetic population that would not fit in the device's memory."""
    optimizer = OPTIMIZERS[config.optimizer.name]
    if not hasattr(optimizer, "memory_bytes"):
        return
    channels = 1 if config.data.grayscale else 3
    in_features = channels * config.data.image_size**2
    widths = [in_features, *config.model.hidden, 1]
    weights = sum((a + 1) * b for a, b in itertools.pairwise(widths))
    population = optimizer_arguments(config).get("population", 32)
    needed = optimizer.memory_bytes(weights, population)
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if needed > free:
        raise ConfigError(
            f"optimizer.population: {population} members of a {weights:,}-weight network need "
            f"{needed / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB free on {device}; "
            "lower optimizer.population or shrink model.hidden / data.image_size"
        )


def build_model(config: Config, in_features: int) -> MLP:
    m = config.model
    return MLP(
        in_features,
        m.hidden,
        dropout=m.dropout,
        batch_norm=m.batch_norm,
        input_dropout=m.input_dropout,
        members=m.ensemble,
    )


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
) -> torch.Tensor:
    """One optimizer step on one batch; returns the batch loss (a 0-d tensor)."""
    if not getattr(optimizer, "uses_gradients", True):
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
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    if getattr(optimizer, "needs_closure", False):
        return optimizer.step(closure).detach()
    loss = closure()
    optimizer.step()
    return loss.detach()


@contextmanager
def stop_on_signals() -> Iterator[dict[str, int]]:
    """Turn Ctrl-C and SIGTERM into a request the loop honours after the current step."""
    request: dict[str, int] = {}

    def handler(signum: int, _frame: Any) -> None:
        request.setdefault("signal", signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# --- the loop -------------------------------------------------------------------------------


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
    elapsed: float = 0.0  # training seconds before this process

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


def train(
    config: Config, run_dir: Path, resume: bool = False, data: PreparedData | None = None
) -> Summary:
    """Train per `config` into `run_dir` (which holds `last.pt` when resuming)."""
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    device = resolve_device(config.device)
    check_population_fits(config, device)
    show_progress = config.train.progress
    checkpoint = load_checkpoint(run_dir, prefer="last.pt") if resume else None
    data = data or prepare_data(config, progress=show_progress)
    if checkpoint is not None:
        data.mean = np.asarray(checkpoint["normalization"]["mean"], dtype=np.float32)
        data.std = np.asarray(checkpoint["normalization"]["std"], dtype=np.float32)

    torch.manual_seed(config.seed)
    model = build_model(config, data.in_features).to(device)
    optimizer = build_optimizer(
        config.optimizer.name, model.parameters(), **optimizer_arguments(config)
    )
    loss_fn = LOSSES[config.loss]
    members = config.model.ensemble

    def objective(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # The loss is the members' mean; their sum gives each member exactly the gradient
        # it would get training alone, so lr means the same for any ensemble size.
        return loss_fn(logits, labels) * members

    progress = Progress()
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        progress = Progress(**checkpoint["progress"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        if device.type == "cuda" and checkpoint["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(checkpoint["rng"]["cuda"], device)
    else:
        save_config(config, run_dir / "config.yaml")

    batch_size = (
        len(data.train_indices) if config.train.batch_size == "full" else config.train.batch_size
    )
    a = config.data.augment
    batches = Batches(
        data.images.pixels,
        data.images.labels,
        data.train_indices,
        batch_size,
        data.mean,
        data.std,
        device=device,
        shuffle=True,
        seed=config.seed,
        augment=Augment(hflip=a.hflip, shift=a.shift, brightness=a.brightness, contrast=a.contrast),
    )
    metrics_path = run_dir / "metrics.csv"
    _keep_metrics_rows(metrics_path, progress.epoch)
    smoothing = config.train.label_smoothing
    epochs = config.train.epochs
    base_lr = config.optimizer.lr

    def payload() -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "config": config_dict(config),
            "normalization": {
                "mean": data.mean.tolist(),
                "std": data.std.tolist(),
                "image_size": config.data.image_size,
                "grayscale": config.data.grayscale,
                "in_features": data.in_features,
            },
            "progress": progress.as_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            },
        }

    model.train()
    started = time.perf_counter()
    with stop_on_signals() as stop:
        while progress.epoch < epochs:
            epoch = progress.epoch
            epoch_started = time.perf_counter()
            bar = tqdm(
                total=len(batches),
                initial=progress.step,
                desc=f"epoch {epoch + 1}/{epochs}",
                disable=not show_progress,
                leave=False,
                dynamic_ncols=True,
            )
            evaluations_before = getattr(optimizer, "evaluations", None)
            lr = base_lr
            for x, y in batches.epoch(epoch, start=progress.step):
                lr = learning_rate(
                    config.train.schedule, base_lr, epoch + progress.step / len(batches), epochs
                )
                for group in optimizer.param_groups:
                    if "lr" in group:
                        group["lr"] = lr
                if smoothing:
                    y = y * (1 - smoothing) + smoothing / 2
                loss = float(train_step(model, optimizer, objective, x, y)) / members
                if not math.isfinite(loss):
                    raise Diverged(
                        f"loss became {loss} at epoch {epoch + 1}, batch {progress.step + 1} "
                        f"with optimizer.lr={lr:g}: the steps are too large; try a smaller lr "
                        f"(e.g. --set optimizer.lr={base_lr / 10:g}). "
                        f"Metrics so far are in {metrics_path}, "
                        f"the last good checkpoint is {run_dir / 'last.pt'}"
                    )
                progress.step += 1
                progress.loss_sum += loss * len(y)
                progress.loss_count += len(y)
                bar.update(1)
                postfix = {"loss": f"{progress.loss_sum / progress.loss_count:.4f}"}
                if evaluations_before is not None:
                    rate = (optimizer.evaluations - evaluations_before) / max(
                        time.perf_counter() - epoch_started, 1e-9
                    )
                    postfix["evals/s"] = f"{rate:.0f}"
                bar.set_postfix(postfix, refresh=False)
                if stop:
                    bar.close()
                    progress.elapsed += time.perf_counter() - started
                    save_checkpoint(payload(), run_dir / "last.pt")
                    signum = stop["signal"]
                    name = signal.Signals(signum).name
                    raise Interrupted(
                        f"{name}: stopped at epoch {epoch + 1}, batch {progress.step}; "
                        "resume with: "
                        f"catdog train --resume {run_dir}",
                        exit_code=128 + signum,
                    )
            bar.close()

            val = measure(
                model,
                data.images.pixels,
                data.images.labels,
                data.val_indices,
                data.mean,
                data.std,
                loss_fn,
                device,
                batch_size=config.eval.batch_size,
                tta=config.eval.tta,
            )
            train_loss = progress.loss_sum / max(progress.loss_count, 1)
            now = time.perf_counter()
            seconds = now - epoch_started
            elapsed = progress.elapsed + (now - started)
            row = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loss": val.loss,
                "val_accuracy": val.accuracy,
                "lr": lr,
                "seconds": seconds,
                "elapsed": elapsed,
            }
            _append_metrics_row(metrics_path, row)
            improved = val.count == 0 or val.accuracy > progress.best_accuracy
            if improved:
                progress.best_accuracy = val.accuracy if val.count else float("nan")
                progress.best_epoch = epoch + 1
                progress.stale_epochs = 0
            else:
                progress.stale_epochs += 1
            progress.epoch += 1
            progress.step = 0
            progress.loss_sum = 0.0
            progress.loss_count = 0
            state = payload()
            state["progress"]["elapsed"] = elapsed
            save_checkpoint(state, run_dir / "last.pt")
            if improved:
                save_checkpoint(state, run_dir / "best.pt")
            print(
                f"epoch {epoch + 1:>3}/{epochs}  train_loss {train_loss:.4f}  "
                f"val_loss {val.loss:.4f}  "
                f"val_acc {val.accuracy:.2%}  {seconds:.1f}s",
                flush=True,
            )
            patience = config.train.early_stopping
            if patience is not None and progress.stale_epochs >= patience:
                note(f"early stopping: no better validation accuracy for {patience} epochs")
                break

    total = progress.elapsed + (time.perf_counter() - started)
    final = read_metrics(metrics_path)[-1] if metrics_path.exists() else {}
    return Summary(
        run_dir, progress.epoch, progress.best_accuracy, progress.best_epoch, final, total
    )


def resume_config(run_dir: Path) -> Config:
    """The resolved config a run was started with, from its last checkpoint."""
    checkpoint = load_checkpoint(run_dir, prefer="last.pt")
    return validate(checkpoint["config"], source=str(run_dir / "last.pt"))


def read_metrics(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as file:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(file)]


def _append_metrics_row(path: Path, row: dict[str, float]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=METRICS_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _keep_metrics_rows(path: Path, epochs: int) -> None:
    """On resume, drop rows of epochs the checkpoint had not completed (killed between writes)."""
    if not path.exists():
        return
    rows = [r for r in read_metrics(path) if r["epoch"] <= epochs]
    path.unlink()
    for r in rows:
        _append_metrics_row(path, {k: (int(v) if k == "epoch" else v) for k, v in r.items()})
