"""Evaluate a trained run on photos as its checkpoint prescribes (`catdog.predict` labels them)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from catdog import classification
from catdog.builders import (
    build_model,
    free_memory,
    parameter_count,
    prepare_data,
    resolve_device,
)
from catdog.checkpoint import load_checkpoint, load_weights
from catdog.config import Config, validate
from catdog.data import PhotoSet, find_photos
from catdog.errors import CheckpointError, DataError
from catdog.images import load_images
from catdog.losses import LOSSES
from catdog.metrics import Measurement, measure
from catdog.outputs import check_new_folder
from catdog.views import describe


@dataclass
class Trained:
    """A model restored from a checkpoint, with what it needs to read photos the same way."""

    model: torch.nn.Module
    config: Config
    mean: np.ndarray
    std: np.ndarray
    device: torch.device
    checkpoint: Path
    epoch: int = 0  # epochs the checkpoint's network was trained for


def restore(target: str | Path, device: str | None = None) -> Trained:
    """The checkpoint's network, checked against its own config and this machine's memory.

    The photo cache is this machine's (`$CATDOG_CACHE_DIR` or the default), never the folder
    a checkpoint's config names: a file from elsewhere doesn't decide where files are written.
    """
    checkpoint = load_checkpoint(target)
    config = validate(checkpoint["config"], source=checkpoint["path"])
    config = config.model_copy(update={"data": config.data.model_copy(update={"cache_dir": None})})
    norm = checkpoint["normalization"]
    torch_device = resolve_device(device or "auto")
    _check_fits(config, torch_device, checkpoint["path"])
    model = build_model(config)
    load_weights(model, checkpoint)
    model.to(torch_device).eval()
    mean = np.asarray(norm["mean"], dtype=np.float32)
    std = np.asarray(norm["std"], dtype=np.float32)
    epoch = int(checkpoint.get("progress", {}).get("epoch", 0))
    return Trained(model, config, mean, std, torch_device, Path(checkpoint["path"]), epoch)


def _check_fits(config: Config, device: torch.device, path: str) -> None:
    """A tiny file whose config asks for a giant network is refused before allocating it."""
    needed, free = 4 * parameter_count(config), free_memory(device)
    if needed > free:
        raise CheckpointError(
            f"{path}: its config asks for a {needed // 4:,}-weight network "
            f"({needed / 2**30:.1f} GiB), more than the {free / 2**30:.1f} GiB free on {device}; "
            "the file was changed or damaged"
        )


@dataclass
class Evaluation:
    """A run measured on photos: the numbers, where they came from, and every photo's score."""

    measurement: Measurement  # its `probabilities` are aligned with `paths` and `labels`
    details: dict[str, Any]  # checkpoint, data, skipped, tta, auc, log_loss, ece
    paths: list[Path]
    labels: np.ndarray
    image_size: int
    grayscale: bool


def evaluate(
    target: str | Path,
    data_root: str | Path | None = None,
    tta: bool | None = None,
    device: str | None = None,
    progress: bool = True,
    report: Path | None = None,
    force: bool = False,
    tta_shift: int | None = None,
) -> tuple[Measurement, dict[str, Any]]:
    """Measure a run on a whole folder of photos, or by default on its validation split.

    With `report`, also write the pictures and predictions.csv of `catdog.report` there
    (refused before any work if the folder holds files, unless `force`).
    """
    if report is not None:
        check_new_folder(report, "--report", force)
    evaluation = evaluate_photos(target, data_root, tta, device, progress, tta_shift)
    if report is not None:
        from catdog.report import Scored, write_report

        result = evaluation.measurement
        scored = Scored(
            evaluation.paths,
            evaluation.labels,
            result.probabilities,
            evaluation.image_size,
            evaluation.grayscale,
        )
        write_report(scored, report)
        evaluation.details["report"] = str(report)
    return evaluation.measurement, evaluation.details


def chosen_views(config: Config, tta: bool | None, tta_shift: int | None) -> tuple[bool, int]:
    """(mirror, shift) of the test-time views: the run's eval.tta and eval.tta_shift, unless
    asked otherwise; asking for no TTA (`tta` False) turns the shifts off too unless named."""
    mirror = config.eval.tta if tta is None else tta
    if tta_shift is None:
        tta_shift = 0 if tta is False else config.eval.tta_shift
    return mirror, tta_shift


def evaluate_photos(
    target: str | Path,
    data_root: str | Path | None = None,
    tta: bool | None = None,
    device: str | None = None,
    progress: bool = True,
    tta_shift: int | None = None,
) -> Evaluation:
    """`evaluate`, keeping each photo's path, label and P(dog).

    A folder of one class is fine: accuracy and log-loss are defined there, AUC is None.
    """
    trained = restore(target, device)
    config = trained.config
    tta, tta_shift = chosen_views(config, tta, tta_shift)
    if data_root is None:
        data = prepare_data(config, progress=progress)
        images, indices = data.images, data.val_indices
        source = f"{config.data.root} (validation split)"
        if len(indices) == 0:
            raise DataError(
                f"{target}: trained on all of {config.data.root} (data.val_fraction: "
                f"{config.data.val_fraction:g}), so no photo was held out; evaluate it on photos "
                "it never saw: catdog evaluate RUN --data DIR"
            )
    else:
        images = load_images(
            _labelled_photos(data_root),
            image_size=config.data.image_size,
            grayscale=config.data.grayscale,
            workers=config.data.workers,
            progress=progress,
        )
        indices = np.arange(len(images.labels))
        source = str(data_root)
    indices = np.sort(indices)  # the order `measure` scores them in
    result = measure(
        trained.model,
        images.pixels,
        images.labels,
        indices,
        trained.mean,
        trained.std,
        LOSSES[config.loss],
        trained.device,
        batch_size=config.eval.batch_size,
        tta=tta,
        tta_shift=tta_shift,
    )
    labels = images.labels[indices]
    details = {
        "checkpoint": str(trained.checkpoint),
        "epoch": trained.epoch,
        "data": source,
        "skipped": len(images.skipped),
        "tta": tta,
        "tta_shift": tta_shift,
        "views": describe(tta, tta_shift, config.data.image_size),
        **classification.summary(labels, result.probabilities),
    }
    paths = [images.paths[i] for i in indices]
    size, gray = config.data.image_size, config.data.grayscale
    return Evaluation(result, details, paths, labels, size, gray)


def _labelled_photos(root: str | Path) -> PhotoSet:
    try:
        return find_photos(root, both_classes=False)
    except DataError as error:
        if "no labelled photos" not in str(error):
            raise
        raise DataError(
            f"{error}; to label photos without labels (such as Kaggle's test1/) use "
            f"catdog predict RUN {root} (--kaggle submission.csv for Kaggle)"
        ) from None
