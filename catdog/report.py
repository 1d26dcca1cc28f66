"""`evaluate --report DIR`: what the network gets wrong, as pictures and one CSV.

- top_losses.png: the photos with the highest loss, captioned with the true label, P(dog),
  the loss and the file name;
- confident_mistakes.png: per class, its photos called the other class, most confident first;
- roc.png: the ROC curve and its AUC; calibration.png: the reliability diagram and the ECE;
- predictions.csv: path, label (the true one), p_dog, loss, for every photo evaluated.

Each photo is shown twice, side by side: the original file downscaled (the photo as the user
knows it) and the S x S square the network saw, enlarged without smoothing. Grids are laid out
by `torchvision.utils.make_grid`; captions are matplotlib text under each tile.
"""

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from PIL import Image, ImageOps
from torchvision.utils import make_grid

from catdog import classification
from catdog.data import CLASS_NAMES
from catdog.images import decode_photo
from catdog.outputs import written_folder
from catdog.plots import new_figure, save

TILE = 112  # pixels of each half of a tile: the original, then the network's view
CAPTION = 34  # pixels of caption band under each tile
PADDING = 4
COLUMNS = 4
TOP_LOSSES = 16
MISTAKES_PER_CLASS = 8
FILES = (
    "top_losses.png",
    "confident_mistakes.png",
    "roc.png",
    "calibration.png",
    "predictions.csv",
)


@dataclass(frozen=True)
class Scored:
    """Evaluated photos: row i is `paths[i]`, its true label and the network's P(dog)."""

    paths: Sequence[Path]
    labels: np.ndarray
    p_dog: np.ndarray
    image_size: int
    grayscale: bool


def write_report(scored: Scored, folder: Path) -> list[Path]:
    """Write the report's files into `folder` (made if absent), each complete or not at all."""
    with written_folder(folder) as temporary:
        _predictions_csv(scored, temporary / "predictions.csv")
        top = classification.top_losses(scored.labels, scored.p_dog, TOP_LOSSES)
        _grid_figure(scored, [("highest loss", top)], temporary / "top_losses.png")
        panels = [
            (
                f"{name}s called {CLASS_NAMES[1 - label]}s, most confident first",
                classification.confident_mistakes(
                    scored.labels, scored.p_dog, label, MISTAKES_PER_CLASS
                ),
            )
            for label, name in enumerate(CLASS_NAMES)
        ]
        _grid_figure(scored, panels, temporary / "confident_mistakes.png")
        _roc_figure(scored, temporary / "roc.png")
        _calibration_figure(scored, temporary / "calibration.png")
    return [folder / name for name in FILES]


def _predictions_csv(scored: Scored, path: Path) -> None:
    losses = classification.photo_losses(scored.labels, scored.p_dog)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["path", "label", "p_dog", "loss"])
        for photo, label, p_dog, loss in zip(
            scored.paths, scored.labels, scored.p_dog, losses, strict=True
        ):
            writer.writerow([str(photo), CLASS_NAMES[int(label)], f"{p_dog:.6f}", f"{loss:.6f}"])


def side_by_side(path: Path, image_size: int, grayscale: bool) -> torch.Tensor:
    """uint8 (3, TILE + CAPTION, 2·TILE): the original downscaled | the network's square."""
    with Image.open(path) as image:
        original = ImageOps.exif_transpose(image).convert("RGB")
    original.thumbnail((TILE, TILE))
    canvas = Image.new("RGB", (2 * TILE, TILE + CAPTION), (255, 255, 255))
    canvas.paste(original, ((TILE - original.width) // 2, (TILE - original.height) // 2))
    seen = decode_photo(path, image_size, grayscale)  # (C, S, S), exactly what the network read
    square = Image.fromarray(np.repeat(seen, 3 // len(seen), axis=0).transpose(1, 2, 0))
    canvas.paste(square.resize((TILE, TILE), Image.Resampling.NEAREST), (TILE, 0))
    return torch.from_numpy(np.asarray(canvas).transpose(2, 0, 1).copy())


def _caption(scored: Scored, row: int) -> str:
    label = int(scored.labels[row])
    p_dog = float(scored.p_dog[row])
    loss = float(classification.photo_losses(scored.labels[row : row + 1], [p_dog])[0])
    name = Path(scored.paths[row]).name
    name = name if len(name) <= 38 else name[:17] + "…" + name[-20:]
    return f"true {CLASS_NAMES[label]}  P(dog) {p_dog:.3f}  loss {loss:.2f}\n{name}"


def _draw_grid(axes: Axes, scored: Scored, rows: np.ndarray) -> None:
    axes.set_axis_off()
    if len(rows) == 0:
        axes.text(0.5, 0.5, "none", ha="center", va="center", transform=axes.transAxes)
        return
    tiles = [side_by_side(Path(scored.paths[r]), scored.image_size, scored.grayscale) for r in rows]
    columns = min(COLUMNS, len(tiles))
    grid = make_grid(torch.stack(tiles), nrow=columns, padding=PADDING, pad_value=255)
    axes.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    step_x, step_y = 2 * TILE + PADDING, TILE + CAPTION + PADDING
    for k, row in enumerate(rows):
        x = PADDING + (k % columns) * step_x + TILE
        y = PADDING + (k // columns) * step_y + TILE + CAPTION / 2
        axes.text(x, y, _caption(scored, row), ha="center", va="center", fontsize=6.5)


def _grid_figure(scored: Scored, panels: list[tuple[str, np.ndarray]], path: Path) -> None:
    heights = [max(1, -(-len(rows) // COLUMNS)) for _, rows in panels]
    width = COLUMNS * (2 * TILE + PADDING) / 100 + 0.4
    figure = new_figure(width, sum(h * (TILE + CAPTION + PADDING) / 100 + 0.5 for h in heights))
    figure.suptitle("left: the photo · right: the square the network saw", fontsize=9)
    axes = figure.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (title, rows) in zip(axes, panels, strict=True):
        ax.set_title(title, fontsize=10)
        _draw_grid(ax, scored, rows)
    save(figure, path)


def _roc_figure(scored: Scored, path: Path) -> None:
    figure = new_figure(5, 5)
    axes = figure.subplots()
    auc = classification.auc(scored.labels, scored.p_dog)
    fpr, tpr = classification.roc_curve(scored.labels, scored.p_dog)
    axes.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    if auc is None:
        axes.set_title(f"ROC undefined: only one class among {len(scored.labels)} photos")
    else:
        axes.plot(fpr, tpr, "-", label=f"network, AUC {auc:.3f}")
        axes.set_title(f"ROC (dog = positive), AUC {auc:.3f}, {len(scored.labels)} photos")
        axes.legend(loc="lower right")
    axes.set(xlabel="false positive rate (cats called dogs)", ylabel="true positive rate")
    axes.set(xlim=(0, 1), ylim=(0, 1.01))
    save(figure, path)


def _calibration_figure(scored: Scored, path: Path) -> None:
    bins = classification.reliability(scored.labels, scored.p_dog)
    figure = new_figure(5, 6)
    top, bottom = figure.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    centers = (bins.edges[:-1] + bins.edges[1:]) / 2
    width = bins.edges[1] - bins.edges[0]
    used = bins.count > 0
    top.bar(centers[used], bins.dog_fraction[used], width=width * 0.9, label="dogs in bin")
    top.plot(bins.mean_p_dog[used], bins.dog_fraction[used], "o", color="C1", label="mean P(dog)")
    top.plot([0, 1], [0, 1], ":", color="grey", label="calibrated")
    top.set(ylabel="fraction of dogs", ylim=(0, 1))
    top.set_title(f"Reliability, ECE {bins.ece:.3f} ({len(bins.count)} bins)")
    top.legend(loc="upper left")
    bottom.bar(centers, bins.count, width=width * 0.9, color="grey")
    bottom.set(xlabel="P(dog)", ylabel="photos", xlim=(0, 1))
    save(figure, path)
