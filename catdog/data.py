"""Find the photos and their labels on disk, and split them into train/validation.

Two layouts are recognised automatically:

- Kaggle's flat folder: `train/cat.123.jpg`, `train/dog.45.jpg`; the label is the
  file-name prefix (`cat`/`dog`, optional plural, any case).
- Class folders: `cat/` + `dog/`, `cats/` + `dogs/` or PetImages' `Cat/` + `Dog/` (any
  case); every image below a class folder, at any depth, takes that folder's label.

Labels are 0 = cat, 1 = dog (the network's sigmoid output reads as P(dog)).
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catdog.errors import DataError

CLASS_NAMES = ("cat", "dog")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"})

_FOLDER_LABELS = {"cat": 0, "cats": 0, "dog": 1, "dogs": 1}
# `cat.1.jpg`, `Dog_7.png`, `cats-3.jpeg`, `dog12.jpg`, but not `catalog.jpg`.
_NAME_LABEL = re.compile(r"^(cat|dog)s?(?![a-z])", re.IGNORECASE)
_EXPECTED = (
    "expected Kaggle's flat layout (cat.1.jpg, dog.1.jpg, ...) "
    "or class folders (cat/ and dog/, cats/ and dogs/, Cat/ and Dog/)"
)


@dataclass(frozen=True)
class PhotoSet:
    """Photo files with their labels, in a deterministic order."""

    root: Path
    paths: list[Path]
    labels: np.ndarray  # int64, 0 = cat, 1 = dog, aligned with `paths`
    layout: str  # "flat" or "folders"
    unlabelled: list[Path]  # images whose label can't be read from name or folder
    warnings: tuple[str, ...] = ()  # what a user should hear about the folder, one line each

    def __len__(self) -> int:
        return len(self.paths)


def find_photos(root: str | os.PathLike[str], both_classes: bool = True) -> PhotoSet:
    """Find the labelled photos under `root`, in either layout (see the module docstring).

    Hidden files and folders (leading '.') are ignored. In the class-folder layout the
    images lying directly in `root` are `unlabelled`, other folders are ignored, and linked
    folders inside a class folder are not followed. The order is a natural sort of the
    paths relative to `root` (`cat.2.jpg` before `cat.10.jpg`).
    A set with photos of one class only is refused unless `both_classes` is False.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; {_EXPECTED}")
    entries = _visible_entries(root)
    class_dirs = [e for e in entries if _is_dir(e) and e.name.lower() in _FOLDER_LABELS]
    images = [Path(e.path) for e in entries if _is_image(e)]
    found: list[tuple[Path, int]] = []
    unlabelled: list[Path] = []
    warnings: list[str] = []
    if class_dirs:
        layout = "folders"
        for folder in class_dirs:
            label = _FOLDER_LABELS[folder.name.lower()]
            below = _images_below(Path(folder.path))
            found += [(path, label) for path in below]
            warnings += _misnamed(Path(folder.path), below, label)
        unlabelled = images
    else:
        layout = "flat"
        for path in images:
            label = label_from_name(path.name)
            if label is None:
                unlabelled.append(path)
            else:
                found.append((path, label))

    found.sort(key=lambda item: natural_key(item[0].relative_to(root).as_posix()))
    unlabelled.sort(key=lambda p: natural_key(p.name))
    if unlabelled:
        warnings.insert(0, _ignored(root, unlabelled, layout))
    labels = np.array([label for _, label in found], dtype=np.int64)
    if not found:
        raise DataError(f"{root}: no labelled photos found; {_EXPECTED}")
    missing = [name for label, name in enumerate(CLASS_NAMES) if not (labels == label).any()]
    if missing and both_classes:
        raise DataError(
            f"{root}: no {missing[0]} photos found (only one class, {layout} layout); {_EXPECTED}"
        )
    paths = [path for path, _ in found]
    return PhotoSet(root, paths, labels, layout, unlabelled, tuple(warnings))


def label_from_name(name: str) -> int | None:
    """0 for `cat.12.jpg`-like names, 1 for `dog.3.jpg`-like names, else None."""
    match = _NAME_LABEL.match(name)
    return None if match is None else CLASS_NAMES.index(match.group(1).lower())


def natural_key(text: str) -> tuple[tuple[int, str | int], ...]:
    """Sort key that orders `cat.2.jpg` before `cat.10.jpg` (numbers before letters, as ASCII)."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part.lower())
        for part in re.split(r"(\d+)", text)
        if part
    )


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into (train, validation), class by class.

    Each class c with n_c rows gives round(val_fraction * n_c) rows to validation, at most
    n_c - 1 so that every class keeps a training photo. The choice within class c depends
    only on (seed, c). Both arrays are sorted int64.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction}: must be in [0, 1)")
    labels = np.asarray(labels)
    train, val = [], []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        rng = np.random.default_rng([seed, int(label)])
        rows = rng.permutation(rows)
        n_val = min(round(val_fraction * len(rows)), len(rows) - 1)
        val.append(rows[:n_val])
        train.append(rows[n_val:])
    empty = [np.empty(0, dtype=np.int64)]
    return (
        np.sort(np.concatenate(train + empty)).astype(np.int64),
        np.sort(np.concatenate(val + empty)).astype(np.int64),
    )


def _ignored(root: Path, ignored: list[Path], layout: str) -> str:
    names = ", ".join(path.name for path in ignored[:3])
    if layout == "flat":
        return (
            f"{len(ignored)} files in {root} have no cat/dog label in their name and were "
            f"ignored (e.g. {names})"
        )
    return (
        f"{len(ignored)} photos lying directly in {root} were ignored because class folders "
        f"exist there, and only the photos inside those count (e.g. {names}); "
        "move them into the class folders"
    )


def _misnamed(folder: Path, images: list[Path], label: int) -> list[str]:
    """A warning for photos whose name says the other class (`dog/cat.3.jpg`)."""
    other = [path for path in images if label_from_name(path.name) == 1 - label]
    if not other:
        return []
    other.sort(key=lambda p: natural_key(p.name))
    names = ", ".join(path.name for path in other[:3])
    return [
        f"{len(other)} photos in {folder} are named as {CLASS_NAMES[1 - label]}s "
        f"(e.g. {names}) but are labelled {CLASS_NAMES[label]} by their folder; "
        "move them if the folder is wrong"
    ]


def _visible_entries(folder: Path) -> list[os.DirEntry[str]]:
    # scandir's entries know their type without a stat per file (fast on 25k-photo folders).
    try:
        with os.scandir(folder) as it:
            return [entry for entry in it if not entry.name.startswith(".")]
    except OSError as error:
        raise DataError(
            f"{folder}: can't read this folder ({error.strerror}); check its permissions"
        ) from None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link to itself, or one that can't be followed
        return False


def _is_image(entry: os.DirEntry[str]) -> bool:
    """A file with an image's name. A link to nowhere or to itself counts too: decoding then
    skips it with the other unreadable photos, naming it."""
    if os.path.splitext(entry.name)[1].lower() not in IMAGE_EXTENSIONS:
        return False
    try:
        return entry.is_file() or (entry.is_symlink() and not entry.is_dir())
    except OSError:  # a link to itself
        return True


def _images_below(folder: Path) -> list[Path]:
    images = []
    pending = [folder]
    while pending:
        for entry in _visible_entries(pending.pop()):
            if entry.is_dir(follow_symlinks=False):  # linked folders could loop
                pending.append(Path(entry.path))
            elif _is_image(entry):
                images.append(Path(entry.path))
    return images
