"""The demo set: procedurally drawn cats and dogs, saved like Kaggle's photos.

The real photos cannot be shipped, so `make_demo_data` draws stand-ins with Pillow:
`cat.1.jpg … cat.N.jpg, dog.1.jpg … dog.N.jpg` in one folder. What tells the classes apart
is the animal's shape, as in the photos: cats have pointed upright ears, a round face, a
short muzzle with a small nose and whiskers; dogs mostly have floppy hanging ears, a longer
face and muzzle and a bigger nose. Every cue overlaps between the classes (dogs with upright
ears, short-nosed dogs, whiskered dogs, fold-eared cats; shared fur colours), and position,
scale, rotation, background, clutter, lighting, noise and JPEG quality vary, so a fully
connected net learns it well but not perfectly.

Nothing but the seed decides a photo: photo i of a class is drawn from its own generator,
seeded with (seed, i, class), so the same seed gives byte-identical files whatever the order
or process they are drawn in. Photo size and JPEG quality come from a generator seeded with
(seed, i) alone: cat.i and dog.i share them, so neither can give the class away.
"""

import errno
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from catdog.data import IMAGE_EXTENSIONS
from catdog.decode_pool import die_with_parent
from catdog.demo_drawing import CLASSES, draw_photo
from catdog.errors import DataError

__all__ = ["CLASSES", "draw_photo", "make_demo_data"]

_POOL_FROM = 400  # photos; below this a process pool costs more than it saves


def make_demo_data(
    out_dir: Path,
    per_class: int = 1000,
    seed: int = 0,
    progress: bool = True,
    *,
    workers: int | None = None,
) -> list[Path]:
    """Write `per_class` cat and `per_class` dog JPEGs into `out_dir`; return their paths.

    Paths come back as cat.1 … cat.N, dog.1 … dog.N. A folder that already holds photos is
    refused (pointed at a real data set by mistake, this would overwrite its photos), and no
    file is ever overwritten. `workers` processes draw the photos (default: one per CPU core
    for large sets, none for small ones); the files do not depend on it.
    """
    if per_class < 1:
        raise DataError(f"per_class must be at least 1, got {per_class}")
    if seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed}")
    out_dir = Path(out_dir)
    _check_empty_of_photos(out_dir)
    with _write_errors(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        jobs = [
            (out_dir / f"{name}.{index}.jpg", seed, label, index)
            for label, name in enumerate(CLASSES)
            for index in range(1, per_class + 1)
        ]
        if workers is None:
            workers = (os.cpu_count() or 1) if len(jobs) >= _POOL_FROM else 1
        bar = tqdm(total=len(jobs), desc="demo photos", unit="photo", disable=not progress)
        with bar:
            if workers <= 1:
                for job in jobs:
                    bar.update(_write_photo(job))
            else:
                pool = ProcessPoolExecutor(
                    workers, initializer=die_with_parent, initargs=(os.getpid(),)
                )
                try:
                    for done in pool.map(_write_photo, jobs, chunksize=16):
                        bar.update(done)
                finally:  # after an error or Ctrl-C, draw no more
                    pool.shutdown(wait=True, cancel_futures=True)
    return [path for path, *_ in jobs]


def _check_empty_of_photos(out_dir: Path) -> None:
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise DataError(f"{out_dir}: is a file, not a folder; give a new or empty folder")
    if not out_dir.is_dir():
        return
    try:
        photos = sorted(p.name for p in out_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    except OSError as error:
        raise DataError(f"{out_dir}: can't read this folder ({error.strerror})") from None
    if photos:
        raise DataError(
            f"{out_dir}: already holds {len(photos)} photos (e.g. {photos[0]}); demo photos "
            "never overwrite photos: give a new or empty folder"
        )


@contextmanager
def _write_errors(out_dir: Path) -> Iterator[None]:
    """A folder that can't be made or written, or a full disk: one line naming the folder."""
    try:
        yield
    except FileExistsError as error:  # appeared since the check: still never overwritten
        raise DataError(
            f"{error.filename}: already exists; demo photos never overwrite photos: "
            "give a new or empty folder"
        ) from None
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(
                f"{out_dir}: not enough space for the demo photos; free space or give "
                "another folder"
            ) from None
        raise DataError(
            f"{out_dir}: can't write the demo photos here ({error.strerror}); "
            "give a writable folder"
        ) from None


def _write_photo(job: tuple[Path, int, int, int]) -> int:
    path, seed, label, index = job
    photo, quality = draw_photo(seed, label, index)
    with open(path, "xb") as file:  # "x": never overwrite, even a file made meanwhile
        photo.save(file, format="JPEG", quality=quality)
    return 1
