"""Label photos with a trained run: files and folders in, one P(dog) per photo out.

Photos go through the same decode path as `evaluate` (all cores, cached on disk), so a
folder predicted twice, or predicted after it was evaluated, is read from the cache; the
network then runs on batches of `eval.batch_size` rows (photos × test-time views).
"""

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from catdog.data import IMAGE_EXTENSIONS, PhotoSet, natural_key
from catdog.errors import ConfigError, DataError

Format = Literal["table", "csv", "json"]
FORMATS: tuple[str, ...] = ("table", "csv", "json")
COLUMNS = ("path", "p_dog", "label", "confidence", "error")


@dataclass(frozen=True)
class Prediction:
    """One photo's answer; `p_dog` is None when the file can't be decoded (see `error`)."""

    path: Path
    p_dog: float | None
    error: str = ""

    @property
    def label(self) -> str | None:
        """dog when P(dog) ≥ 0.5, as `evaluate` counts it; None for an unreadable photo."""
        if self.p_dog is None:
            return None
        return "dog" if self.p_dog >= 0.5 else "cat"

    @property
    def probability(self) -> float | None:
        """P(dog), as `p_dog` (the name the Python API documents)."""
        return self.p_dog

    @property
    def confidence(self) -> float | None:
        """The probability of the label given: max(P(dog), 1 − P(dog))."""
        return None if self.p_dog is None else max(self.p_dog, 1.0 - self.p_dog)

    def row(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "p_dog": self.p_dog,
            "label": self.label,
            "confidence": self.confidence,
            "error": self.error,
        }


def collect_photos(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The photos named: files as given, folders searched recursively for image files.

    A folder's photos come in the natural order of their paths below it (as `evaluate`
    orders them, so both share one cache entry); hidden files and folders are skipped and
    linked folders are not followed. A photo named twice is kept once, where first named.
    """
    if not paths:
        raise DataError("no photos given; name photo files or folders")
    found: list[Path] = []
    seen: set[str] = set()
    for given in map(Path, paths):
        if given.is_dir():
            below = _images_below(given)
            if not below:
                kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
                raise DataError(f"{given}: no photos in this folder or below it ({kinds})")
        elif given.exists():
            below = [given]
        else:
            raise DataError(f"{given}: no such file or folder")
        for path in below:
            key = os.path.abspath(path)
            if key not in seen:
                seen.add(key)
                found.append(path)
    return found


def _images_below(folder: Path) -> list[Path]:
    images: list[Path] = []
    for parent, folders, files in os.walk(folder):  # os.walk never follows linked folders
        folders[:] = [name for name in folders if not name.startswith(".")]
        images += [
            Path(parent, name)
            for name in files
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        ]
    return sorted(images, key=lambda path: natural_key(path.relative_to(folder).as_posix()))


def predict(
    target: str | Path,
    paths: Sequence[Path],
    tta: bool | None = None,
    device: str | None = None,
    progress: bool = True,
    trained: Any = None,
    tta_shift: int | None = None,
) -> list[Prediction]:
    """P(dog) for each photo of `paths`, in order; unreadable ones get their error instead.

    `trained` (a `catdog.evaluate.Trained`) skips restoring `target` again.
    """
    import torch

    from catdog.evaluate import chosen_views, restore
    from catdog.images import load_images
    from catdog.metrics import predict_pixels
    from catdog.views import view_count

    trained = trained or restore(target, device)
    config = trained.config
    tta, tta_shift = chosen_views(config, tta, tta_shift)
    photos = PhotoSet(
        root=Path(os.path.commonpath([os.path.abspath(p) for p in paths])),
        paths=list(paths),
        labels=np.zeros(len(paths), dtype=np.int64),
        layout="files",
        unlabelled=[],
    )
    images = load_images(
        photos,
        image_size=config.data.image_size,
        grayscale=config.data.grayscale,
        cache_dir=Path(config.data.cache_dir) if config.data.cache_dir else None,
        workers=config.data.workers,
        progress=progress,
    )
    chunks = []
    # eval.batch_size counts forward rows: with V views a batch holds batch_size // V photos.
    batch = max(1, config.eval.batch_size // view_count(tta, tta_shift, config.data.image_size))
    trained.model.eval()
    for start in range(0, len(images), batch):
        pixels = np.array(images.pixels[start : start + batch])  # torch wants it writable
        logits = predict_pixels(
            trained.model, pixels, trained.mean, trained.std, trained.device, tta, tta_shift
        )
        chunks.append(torch.sigmoid(logits.float()).cpu().numpy())
    p_dog = np.concatenate(chunks) if chunks else np.empty(0, np.float32)
    answers = {str(path): float(p) for path, p in zip(images.paths, p_dog, strict=True)}
    errors = {str(path): _why_unreadable(path, config) for path in images.skipped}
    return [Prediction(path, answers.get(str(path)), errors.get(str(path), "")) for path in paths]


def _why_unreadable(path: Path, config: Any) -> str:
    """The decoder's complaint about a photo the cache lists as skipped."""
    from catdog.images import decode_photo

    try:
        decode_photo(path, config.data.image_size, config.data.grayscale)
    except DataError as error:
        cause = error.__cause__
        return f"{type(cause).__name__}: {cause}" if cause else str(error)
    return "could not be decoded when the cache was written"


def unreadable_warning(predictions: Sequence[Prediction]) -> str | None:
    """One line for all the photos skipped, naming the first, or None if there are none."""
    failed = [p for p in predictions if p.p_dog is None]
    if not failed:
        return None
    return (
        f"warning: {len(failed)} of {len(predictions)} photos can't be decoded and were "
        f"skipped (first: {failed[0].path}: {failed[0].error}); each is listed with its error"
    )


def output_format(out: Path | None, format: str | None) -> Format:
    """--format if given, else from --out's extension (.csv, .json), else the table."""
    if format is not None:
        if format not in FORMATS:
            raise ConfigError(f"--format {format}: must be one of {', '.join(FORMATS)}")
        return format  # type: ignore[return-value]
    if out is None:
        return "table"
    suffix = out.suffix.lower().lstrip(".")
    if suffix not in ("csv", "json"):
        raise ConfigError(
            f"--out {out}: can't tell the format from its extension; name it .csv or .json, "
            "or pass --format csv|json|table"
        )
    return suffix  # type: ignore[return-value]


def render(predictions: Iterable[Prediction], format: Format) -> str:
    """The predictions as a table for people, CSV (COLUMNS, with a header) or a JSON list."""
    rows = [p.row() for p in predictions]
    if format == "json":
        return json.dumps(rows, indent=1) + "\n"
    if format == "csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        return text.getvalue()
    return _table(rows)


def _table(rows: list[dict[str, Any]]) -> str:
    width = max([len("path"), *(len(row["path"]) for row in rows)])
    lines = [f"{'path':<{width}}  {'p_dog':>6}  label  confidence"]
    for row in rows:
        if row["p_dog"] is None:
            lines.append(f"{row['path']:<{width}}  {'-':>6}  -      unreadable: {row['error']}")
        else:
            lines.append(
                f"{row['path']:<{width}}  {row['p_dog']:6.4f}  {row['label']:<5}  "
                f"{row['confidence']:10.1%}"
            )
    return "\n".join(lines) + "\n"
