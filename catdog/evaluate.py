"""Evaluate a trained run on photos, and predict single photos, as the checkpoint prescribes."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from catdog.builders import build_model, prepare_data, resolve_device
from catdog.checkpoint import load_checkpoint
from catdog.config import Config, validate
from catdog.data import find_photos
from catdog.decode import decode_photo
from catdog.errors import UnreadablePhotoError
from catdog.images import load_images
from catdog.losses import LOSSES
from catdog.metrics import Measurement, measure, predict_pixels


@dataclass
class Trained:
    """A model restored from a checkpoint, with what it needs to read photos the same way."""

    model: torch.nn.Module
    config: Config
    mean: np.ndarray
    std: np.ndarray
    device: torch.device
    checkpoint: Path


def restore(target: str | Path, device: str | None = None) -> Trained:
    checkpoint = load_checkpoint(target)
    config = validate(checkpoint["config"], source=checkpoint["path"])
    norm = checkpoint["normalization"]
    torch_device = resolve_device(device or "auto")
    model = build_model(config)
    model.load_state_dict(checkpoint["model"])
    model.to(torch_device).eval()
    mean = np.asarray(norm["mean"], dtype=np.float32)
    std = np.asarray(norm["std"], dtype=np.float32)
    return Trained(model, config, mean, std, torch_device, Path(checkpoint["path"]))


def evaluate(
    target: str | Path,
    data_root: str | Path | None = None,
    tta: bool | None = None,
    device: str | None = None,
    progress: bool = True,
) -> tuple[Measurement, dict[str, Any]]:
    """Measure a run on a whole folder of photos, or by default on its validation split."""
    trained = restore(target, device)
    config = trained.config
    tta = config.eval.tta if tta is None else tta
    if data_root is None:
        data = prepare_data(config, progress=progress)
        pixels, labels, indices = data.images.pixels, data.images.labels, data.val_indices
        skipped = len(data.images.skipped)
        source = f"{config.data.root} (validation split)"
    else:
        images = load_images(
            find_photos(data_root),
            image_size=config.data.image_size,
            grayscale=config.data.grayscale,
            cache_dir=Path(config.data.cache_dir) if config.data.cache_dir else None,
            workers=config.data.workers,
            progress=progress,
        )
        pixels, labels, indices = images.pixels, images.labels, np.arange(len(images.labels))
        skipped = len(images.skipped)
        source = str(data_root)
    result = measure(
        trained.model,
        pixels,
        labels,
        indices,
        trained.mean,
        trained.std,
        LOSSES[config.loss],
        trained.device,
        batch_size=config.eval.batch_size,
        tta=tta,
    )
    details = {
        "checkpoint": str(trained.checkpoint),
        "data": source,
        "skipped": skipped,
        "tta": tta,
    }
    return result, details


@dataclass
class Prediction:
    path: Path
    probability: float | None  # None: the file could not be read
    error: str = ""

    @property
    def label(self) -> str:
        return "dog" if (self.probability or 0.0) >= 0.5 else "cat"


def predict(
    target: str | Path, images: list[Path], tta: bool | None = None, device: str | None = None
) -> list[Prediction]:
    trained = restore(target, device)
    config = trained.config
    tta = config.eval.tta if tta is None else tta
    predictions = []
    for path in images:
        try:
            pixels = decode_photo(path, config.data.image_size, config.data.grayscale)
        except (UnreadablePhotoError, OSError) as error:
            predictions.append(
                Prediction(path, None, str(error) or f"{path}: cannot read this image")
            )
            continue
        logit = predict_pixels(
            trained.model, pixels[None], trained.mean, trained.std, trained.device, tta
        )
        predictions.append(Prediction(path, float(torch.sigmoid(logit)[0])))
    return predictions
