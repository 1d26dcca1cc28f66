"""The training loop: epochs of mini-batches, metrics, checkpoints, resume and interruption.

One epoch visits the training split once, in an order fixed by (seed, epoch). After each epoch the
validation split is measured, a line is printed, a row goes to `metrics.csv`, and `last.pt` (and
`best.pt` when validation accuracy improved) are written. Ctrl-C or SIGTERM finish the current
step and write a resumable `last.pt`; a NaN or infinite loss stops the run and keeps the last good
checkpoint.

Under torchrun (see `catdog.distributed`) each process trains on its share of every global batch
in DistributedDataParallel, so the steps are those of one process with the same global batch;
validation is split over the ranks and gathered; rank 0 alone writes files and prints.
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

from catdog import distributed
from catdog.batches import Augment, Batches, channel_stats, zca_whitening
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
from catdog.metrics import Measurement, measure
from catdog.model import MLP
from catdog.optim import OPTIMIZERS, build_optimizer

METRICS_FIELDS = ["epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds", "elapsed"]


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""

    # Under DDP every rank sees the same all-reduced loss and raises together (see
    # `distributed.everywhere`); likewise for the stop flag behind `Interrupted`.
    on_every_rank = True


class Interrupted(RuntimeError):
    """Training stopped on a signal after writing a resumable checkpoint."""

    on_every_rank = True

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def note(message: str) -> None:
    """A remark on stderr that does not tear an open progress bar (rank 0's only: one copy)."""
    if distributed.is_main():
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
    widths = [config.data.in_features, *config.model.hidden, 1]
    weights = config.model.ensemble * sum((a + 1) * b for a, b in itertools.pairwise(widths))
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
        whiten=config.data.normalization == "zca",
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
    weight: float = 1.0,
) -> torch.Tensor:
    """One optimizer step on one batch; returns the batch loss (a 0-d tensor).

    Backward runs on `weight` * loss. Under DDP, rank r holds n_r of a global batch's N rows and
    its loss L_r is the mean over those; DDP averages the ranks' gradients, so with weight
    w_r = n_r·W/N the step takes (1/W)·Σ_r w_r·∇L_r = (1/N)·Σ_i ∇loss_i, the global batch's mean
    gradient, however unevenly the batch splits. A rank with no rows backpropagates a zero (it
    must still join DDP's gradient all-reduce) and reports a loss of 0.
    """
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
        logits = model(x)
        loss = loss_fn(logits, y) if len(y) else logits.sum()
        (loss if weight == 1.0 else loss * weight).backward()
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
    """Train per `config` into `run_dir` (which holds `last.pt` when resuming).

    Inside a process group (torchrun) every rank calls this with the same arguments.
    """
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    rank, world = distributed.rank(), distributed.world_size()
    main = rank == 0
    device = distributed.device() if distributed.active() else resolve_device(config.device)
    if distributed.active():
        check_distributed(config, world, device)
    check_population_fits(config, device)
    show_progress = config.train.progress and main
    checkpoint = load_checkpoint(run_dir, prefer="last.pt") if resume else None
    if data is None:
        with distributed.main_first():  # rank 0 decodes and caches; the others read its cache
            data = prepare_data(config, progress=show_progress)
    if checkpoint is not None:
        data.mean = np.asarray(checkpoint["normalization"]["mean"], dtype=np.float32)
        data.std = np.asarray(checkpoint["normalization"]["std"], dtype=np.float32)

    torch.manual_seed(config.seed)
    model = build_model(config, data.in_features).to(device)
    if model.whitening is not None and checkpoint is None:  # a resumed run loads its own
        whitening = zca_whitening(
            data.images.pixels, data.train_indices, data.mean, data.std, config.data.zca_epsilon
        )
        model.whitening.set(*(torch.from_numpy(array) for array in whitening))
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
        _restore_rng(checkpoint["rng"], device, config.seed, progress)
    else:
        if main:
            save_config(config, run_dir / "config.yaml")
        if world > 1:
            # Same initial weights everywhere (seeded above), but each rank's own dropout masks.
            torch.manual_seed(_rank_seed(config.seed, rank))
    # DDP averages the gradients in backward; `model` stays the plain network for
    # checkpoints and evaluation.
    network = distributed.wrap(model) if distributed.active() else model

    batch_size = (
        len(data.train_indices) if config.train.batch_size == "full" else config.train.batch_size
    )
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
        augment=Augment(**config.data.augment.model_dump()),
        rank=rank,
        world_size=world,
    )
    metrics_path = run_dir / "metrics.csv"
    if main:
        _keep_metrics_rows(metrics_path, progress.epoch)
    smoothing = config.train.label_smoothing
    epochs = config.train.epochs
    base_lr = config.optimizer.lr

    def payload() -> dict[str, Any]:
        """The checkpoint; every rank must call it (it gathers the ranks' random states)."""
        rng = _rng_state(device)
        if world > 1:
            ranks = distributed.all_gather(rng)
            rng = {**ranks[0], "ranks": ranks}
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
            "rng": rng,
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
                rows = min(batch_size, len(data.train_indices) - progress.step * batch_size)
                weight = len(y) * world / rows  # 1 in one process; see train_step
                loss = float(train_step(network, optimizer, objective, x, y, weight)) / members
                # One all-reduce per step (none in one process): the global batch's loss, and
                # whether any rank was asked to stop, so that all ranks stop at the same step.
                loss_sum, count, stopping = distributed.sum_across(
                    [loss * len(y), len(y), float(bool(stop))]
                )
                if not math.isfinite(loss_sum):
                    batch_loss = loss_sum / count
                    raise Diverged(
                        f"loss became {batch_loss} at epoch {epoch + 1}, batch {progress.step + 1} "
                        f"with optimizer.lr={lr:g}: the steps are too large; try a smaller lr "
                        f"(e.g. --set optimizer.lr={base_lr / 10:g}). "
                        f"Metrics so far are in {metrics_path}, "
                        f"the last good checkpoint is {run_dir / 'last.pt'}"
                    )
                progress.step += 1
                progress.loss_sum += loss_sum
                progress.loss_count += int(count)
                bar.update(1)
                postfix = {"loss": f"{progress.loss_sum / progress.loss_count:.4f}"}
                if evaluations_before is not None:
                    rate = (optimizer.evaluations - evaluations_before) / max(
                        time.perf_counter() - epoch_started, 1e-9
                    )
                    postfix["evals/s"] = f"{rate:.0f}"
                bar.set_postfix(postfix, refresh=False)
                if stopping:
                    signum = distributed.max_across(stop.get("signal", 0))  # some rank's signal
                    bar.close()
                    progress.elapsed += time.perf_counter() - started
                    state = payload()
                    if main:
                        save_checkpoint(state, run_dir / "last.pt")
                    distributed.barrier()  # no rank exits before last.pt is on disk
                    name = signal.Signals(signum).name
                    raise Interrupted(
                        f"{name}: stopped at epoch {epoch + 1}, batch {progress.step}; "
                        "resume with: "
                        f"catdog train --resume {run_dir}",
                        exit_code=128 + signum,
                    )
            bar.close()

            val = measure_split(model, data, loss_fn, device, config)
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
            if main:
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
            if main:
                save_checkpoint(state, run_dir / "last.pt")
                if improved:
                    save_checkpoint(state, run_dir / "best.pt")
                print(
                    f"epoch {epoch + 1:>3}/{epochs}  train_loss {train_loss:.4f}  "
                    f"val_loss {val.loss:.4f}  val_acc {val.accuracy:.2%}  {seconds:.1f}s",
                    flush=True,
                )
            patience = config.train.early_stopping
            if patience is not None and progress.stale_epochs >= patience:
                note(f"early stopping: no better validation accuracy for {patience} epochs")
                break

    distributed.barrier()  # rank 0 has written everything before any rank returns
    total = progress.elapsed + (time.perf_counter() - started)
    final = read_metrics(metrics_path)[-1] if metrics_path.exists() else {}
    if main and metrics_path.exists():  # under DDP one writer: rank 0
        from catdog.plots import plot_curves  # lazy: matplotlib takes a while to import

        plot_curves(read_metrics(metrics_path), run_dir / "curves.png", title=run_dir.name)
    return Summary(
        run_dir, progress.epoch, progress.best_accuracy, progress.best_epoch, final, total
    )


# --- data parallel ----------------------------------------------------------------------------


def check_distributed(config: Config, world_size: int, device: torch.device) -> None:
    """Refuse, in one line, what data-parallel training can't do exactly as one process does."""
    name = config.optimizer.name
    if not getattr(OPTIMIZERS[name], "uses_gradients", True):
        raise distributed.everywhere(
            ConfigError(
                f"optimizer.name: {name!r} is gradient-free, so DistributedDataParallel has no "
                "gradients to average; train it in one process (without torchrun or --nproc)"
            )
        )
    if config.model.batch_norm and world_size > 1 and device.type != "cuda":
        raise distributed.everywhere(
            ConfigError(
                "model.batch_norm: over several processes the batch statistics need "
                "SyncBatchNorm, which torch runs on GPUs only; on the CPU train it in one "
                "process, or set model.batch_norm=false"
            )
        )


def measure_split(
    model: torch.nn.Module, data: PreparedData, loss_fn: Loss, device: torch.device, config: Config
) -> Measurement:
    """The validation measurement; under DDP each rank measures every world-th photo, then all
    ranks gather the parts and merge them, so every rank gets the whole split's numbers."""
    if distributed.world_size() == 1:
        return _measure(model, data, data.val_indices, loss_fn, device, config)
    mine = np.sort(data.val_indices)[distributed.rank() :: distributed.world_size()]
    part = _measure(model, data, mine, loss_fn, device, config)
    return merge_measurements(distributed.all_gather(part))


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


def _measure(
    model: torch.nn.Module,
    data: PreparedData,
    rows: np.ndarray,
    loss_fn: Loss,
    device: torch.device,
    config: Config,
) -> Measurement:
    return measure(
        model,
        data.images.pixels,
        data.images.labels,
        rows,
        data.mean,
        data.std,
        loss_fn,
        device,
        batch_size=config.eval.batch_size,
        tta=config.eval.tta,
    )


def _rank_seed(*parts: int) -> int:
    """A seed for this rank's own random stream (dropout), mixed from `parts`."""
    state = np.random.SeedSequence([int(part) for part in parts]).generate_state(1, np.uint64)
    return int(state[0] >> 1)  # 63 bits: torch.manual_seed takes a signed 64-bit seed


def _rng_state(device: torch.device) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def _restore_rng(
    saved: dict[str, Any], device: torch.device, seed: int, progress: Progress
) -> None:
    """Continue the random stream the checkpoint left off at; under DDP each rank its own.

    A checkpoint from another number of processes has no stream for this rank: it starts a
    fresh one from (seed, rank, epoch, step).
    """
    rank, world = distributed.rank(), distributed.world_size()
    if world > 1:
        ranks = saved.get("ranks") or []
        if len(ranks) != world:
            torch.manual_seed(_rank_seed(seed, rank, progress.epoch, progress.step))
            return
        saved = ranks[rank]
    torch.set_rng_state(saved["torch"])
    if device.type == "cuda" and saved.get("cuda") is not None:
        torch.cuda.set_rng_state(saved["cuda"], device)


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
