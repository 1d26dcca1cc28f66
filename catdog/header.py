"""The few lines a run prints before its first epoch: what it is about to do, and where.

Device (which `auto` may have turned into CUDA), threads, photos, image size and features, the
network's parameter count, the optimizer with its hyperparameters, and the run folder.
"""

from typing import TYPE_CHECKING

import torch

from catdog import distributed
from catdog.builders import optimizer_arguments

if TYPE_CHECKING:
    from catdog.train import Run


def header_lines(run: "Run") -> list[str]:
    config, data = run.config, run.data
    world = distributed.world_size()
    device = f"{run.device}" + (
        f" × {world} processes (DistributedDataParallel)" if world > 1 else ""
    )
    threads = torch.get_num_threads()
    skipped = len(data.images.skipped)
    channels = "grayscale" if config.data.grayscale else "RGB"
    size = config.data.image_size
    parameters = sum(p.numel() for p in run.model.parameters())
    widths = " → ".join(str(w) for w in [config.data.in_features, *config.model.hidden, 1])
    ensemble = f" × {config.model.ensemble} networks" if config.model.ensemble > 1 else ""
    hyperparameters = " ".join(
        f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
        # lr first: it is what people compare
        for key, value in sorted(optimizer_arguments(config).items(), key=lambda kv: kv[0] != "lr")
    )
    batch = config.train.batch_size
    verb = "resuming" if run.progress.epoch or run.progress.step else "training"
    return [
        f"{verb} {run.run_dir}",
        f"  device     {device}, {threads} CPU thread{'s' if threads != 1 else ''}",
        f"  photos     {len(data.train_indices):,} train / {len(data.val_indices):,} validation"
        f" / {skipped:,} skipped, from {config.data.root}",
        f"  images     {size}×{size} {channels}: {config.data.in_features:,} features, "
        f"{config.data.normalization} normalisation",
        f"  network    {widths}{ensemble}: {parameters:,} parameters, loss {config.loss}",
        f"  optimizer  {config.optimizer.name} {hyperparameters}".rstrip()
        + f", batch {batch}, {config.train.epochs} epochs",
    ]


def print_header(run: "Run") -> None:
    """Print the header, once (rank 0's under DDP)."""
    if distributed.is_main():
        print("\n".join(header_lines(run)), flush=True)
