"""What a run is built from: its photos, device, network and optimizer, each from the config.

The training loop, `evaluate` and `compare` all build through here, so a config means the same
network and the same photos wherever it is read.
"""

import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from catdog import distributed
from catdog.batches import channel_stats
from catdog.config import Config, optimizer_parameters
from catdog.data import find_photos, stratified_split
from catdog.devices import resolve_device
from catdog.errors import ConfigError, DataError
from catdog.images import DecodedImages, load_images
from catdog.model import MLP
from catdog.optim import OPTIMIZERS, build_optimizer

__all__ = [
    "PreparedData",
    "build_model",
    "check_memory_fits",
    "decode",
    "make_optimizer",
    "optimizer_arguments",
    "parameter_count",
    "prepare_data",
    "resolve_device",
]


def note(message: str) -> None:
    """A remark on stderr that does not tear an open progress bar (rank 0's only: one copy)."""
    if distributed.is_main():
        tqdm.write(message, file=sys.stderr)


# --- photos -----------------------------------------------------------------------------------


@dataclass
class PreparedData:
    """Decoded photos, the run's split, and the training split's per-channel statistics."""

    images: DecodedImages
    train_indices: np.ndarray
    val_indices: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def decode(config: Config, root: str | Path | None = None, progress: bool = True) -> DecodedImages:
    """Find and decode (once, cached) the photos under `root` (default: `data.root`)."""
    data = config.data
    root = data.root if root is None else root
    photos = find_photos(root)
    for line in photos.warnings:  # files ignored and why; photos that look mislabelled
        note(f"warning: {line}")
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
    return images


def prepare_data(
    config: Config,
    progress: bool = True,
    normalization: tuple[np.ndarray, np.ndarray] | None = None,
) -> PreparedData:
    """Decode and split the photos; normalise with the training split's statistics.

    `normalization` (mean, std) is a resumed run's own, so they are not computed again.
    """
    images = decode(config, progress=progress)
    train_indices, val_indices = stratified_split(
        images.labels, config.data.val_fraction, config.seed
    )
    if len(train_indices) == 0:
        raise DataError(
            f"{config.data.root}: no photos left for training; add photos or lower "
            "data.val_fraction"
        )
    if normalization is None:
        normalization = channel_stats(images.pixels, train_indices)
    mean, std = normalization
    return PreparedData(images, train_indices, val_indices, mean, std)


# --- device, network, optimizer ------------------------------------------------------------


def build_model(config: Config) -> MLP:
    """The config's network (untrained; its whitening, if any, still the identity)."""
    m = config.model
    return MLP(
        config.data.in_features,
        m.hidden,
        dropout=m.dropout,
        batch_norm=m.batch_norm,
        input_dropout=m.input_dropout,
        members=m.ensemble,
        whiten=config.data.normalization == "zca",
    )


def optimizer_arguments(config: Config) -> dict[str, Any]:
    """The optimizer's keyword arguments; a seeded optimizer follows the run's seed unless told."""
    arguments = config.optimizer.hyperparameters
    if "seed" in optimizer_parameters(config.optimizer.name):
        arguments.setdefault("seed", config.seed)
    return arguments


def make_optimizer(config: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    return build_optimizer(config.optimizer.name, model.parameters(), **optimizer_arguments(config))


def parameter_count(config: Config) -> int:
    """Trained numbers of the config's network, all ensemble members together, counted before
    anything is allocated: weights and biases, and batch norm's scale and shift."""
    model = config.model
    widths = [config.data.in_features, *model.hidden, 1]
    linear = sum((a + 1) * b for a, b in itertools.pairwise(widths))
    batch_norm = 2 * sum(model.hidden) if model.batch_norm else 0
    return model.ensemble * (linear + batch_norm)


def check_memory_fits(config: Config, device: torch.device) -> None:
    """Refuse, before anything is allocated, a network and optimizer that would not fit.

    The estimate is the weights and their gradients (float32) plus what the optimizer says it
    holds at its peak (a genetic population: many copies of the weights).
    """
    weights = parameter_count(config)
    arguments = optimizer_arguments(config)
    arguments.pop("lr", None)
    optimizer = OPTIMIZERS[config.optimizer.name]
    needed = 2 * 4 * weights + optimizer.memory_bytes(weights, **arguments)
    free = free_memory(device)
    if needed <= free:
        return
    need = f"{needed / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB free on {device}"
    if "population" in arguments or not optimizer.uses_gradients:
        population = arguments.get("population", "the default")
        raise ConfigError(
            f"optimizer.population: {population} members of a {weights:,}-weight network need "
            f"{need}; lower optimizer.population or shrink model.hidden / data.image_size"
        )
    raise ConfigError(
        f"model: a {weights:,}-weight network (model.hidden {config.model.hidden}, "
        f"model.ensemble {config.model.ensemble}) and its optimizer need {need}; "
        "shrink model.hidden, model.ensemble or data.image_size"
    )


def free_memory(device: torch.device) -> int:
    """Bytes free on `device` now: the GPU's, or the machine's available memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
