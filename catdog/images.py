"""Decode every photo once, into one uint8 array cached on disk and memory-mapped.

A photo becomes a (C, S, S) uint8 array: the whole photo squashed to S x S (no crop),
C = 3 (RGB) or 1 (grayscale). All photos together are one `(N, C, S, S)` `.npy` file in a
cache folder, keyed by a hash of the photo files (resolved path, size, mtime), S, the
colour mode and `CACHE_VERSION`; any change to them gives a new key, so a new decode.

A cache entry is a folder `<key>/` holding `pixels.npy` and `meta.json`. It is written
under a temporary name and renamed into place in one step, so a reader sees both files or
neither, and a killed writer leaves only a temporary folder that is never read. Writers of
the same key take turns through a lock file (`fcntl.flock`), so two runs started together
decode once: the second waits, then reads what the first wrote.
"""

import hashlib
import json
import math
import os
import secrets
import shutil
import stat
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image
from tqdm import tqdm

from catdog.data import PhotoSet
from catdog.errors import DataError, UnreadablePhotoError

try:
    import fcntl
except ImportError:  # not POSIX: the atomic rename alone keeps the cache consistent
    fcntl = None

# Bump when decoding changes what pixels a photo gives: old caches then miss.
CACHE_VERSION = 1
# Pillow's default filter: a plain Pillow loop gives the same pixels, only slower.
RESAMPLE = Image.Resampling.BICUBIC
DRAFT_FACTOR = 2  # JPEGs are decoded at >= 2x the target size before the final resize

_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_ALPHA = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


@dataclass
class DecodedImages:
    """The readable photos of a `PhotoSet`, decoded; row i of `pixels` is `paths[i]`."""

    pixels: np.ndarray  # uint8 (N, C, S, S), memory-mapped read-only from `cache_file`
    paths: list[Path]
    labels: np.ndarray  # int64, 0 = cat, 1 = dog
    skipped: list[Path]  # unreadable photos, left out of `pixels`
    cache_file: Path
    decoded: int  # photos decoded by this call; 0 when the cache was read

    def __len__(self) -> int:
        return len(self.paths)


def decode_photo(path: str | os.PathLike[str], image_size: int, grayscale: bool) -> np.ndarray:
    """Decode one photo to uint8 (C, S, S): upright, squashed to S x S, RGB or gray.

    JPEGs use the decoder's own DCT downscaling (`Image.draft`: 1/2, 1/4 or 1/8) to a size
    still >= DRAFT_FACTOR * S, then an antialiased bicubic resize to S x S. Decoding fewer
    pixels is faster, and the result stays within about a grey level of a full decode
    followed by the same resize. EXIF-rotated photos come out upright.
    Raises `UnreadablePhotoError` for anything Pillow can't decode.
    """
    _check_image_size(image_size)
    mode = "L" if grayscale else "RGB"
    try:
        with Image.open(path) as image:
            # draft only touches JPEGs; asking for 'L' lets libjpeg skip the colour work.
            draft_size = (DRAFT_FACTOR * image_size, DRAFT_FACTOR * image_size)
            image.draft("L" if grayscale else None, draft_size)
            small = to_mode(image, mode).resize((image_size, image_size), RESAMPLE)
            # Squashing to a square commutes with the EXIF flips and rotations, so turning
            # the small result upright is the same as turning the photo, and cheaper.
            pixels = np.asarray(_upright(small, _exif_orientation(image)))
    except MemoryError:
        raise
    except Exception as error:  # Pillow's plugins raise many types on corrupt files
        raise UnreadablePhotoError(
            f"{path}: can't decode this photo ({type(error).__name__}: {error}); "
            "delete or replace the file"
        ) from error
    return pixels[None] if grayscale else pixels.transpose(2, 0, 1).copy()


def to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert any Pillow image to `mode` ('RGB' or 'L').

    Transparent pixels are composited on white (alpha a: out = a * colour + (1 - a) * 255).
    16-bit samples are scaled to 8 bits (v / 257); Pillow's own conversion would clip them
    at 255. A 32-bit 'I' image counts as 16-bit when its maximum exceeds 255, and an 'F'
    image with values in [0, 1] is scaled by 255.
    """
    if image.mode in _SIXTEEN_BIT:
        image = _eight_bit(image)
    if image.mode in _ALPHA or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image if image.mode == mode else image.convert(mode)


def default_cache_dir() -> Path:
    """`$CATDOG_CACHE_DIR`, else `$XDG_CACHE_HOME/catdog`, else `~/.cache/catdog`."""
    if folder := os.environ.get("CATDOG_CACHE_DIR"):
        return Path(folder)
    if folder := os.environ.get("XDG_CACHE_HOME"):
        return Path(folder) / "catdog"
    return Path.home() / ".cache" / "catdog"


def cache_key(paths: Sequence[Path], image_size: int, grayscale: bool) -> str:
    """Hash of the settings and each photo's resolved path, size and mtime, in order."""
    settings = {
        "version": CACHE_VERSION,
        "image_size": image_size,
        "grayscale": grayscale,
        "resample": RESAMPLE.name,
        "draft_factor": DRAFT_FACTOR,
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    real_folders: dict[str, str] = {}
    for path in paths:
        folder, name = os.path.split(os.path.abspath(path))
        if folder not in real_folders:
            real_folders[folder] = os.path.realpath(folder)
        try:
            info = os.lstat(path)
            real = os.path.join(real_folders[folder], name)
            if stat.S_ISLNK(info.st_mode):  # a link's target is what gets decoded
                real = os.path.realpath(path)
                info = os.stat(real)
        except OSError as error:
            raise DataError(
                f"{path}: can't read this photo ({error.strerror}); check it exists"
            ) from error
        digest.update(f"{real}\t{info.st_size}\t{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def load_images(
    photos: PhotoSet,
    image_size: int,
    grayscale: bool,
    cache_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> DecodedImages:
    """Decoded pixels of `photos`: read from the cache, or decoded on all cores and cached.

    `workers=None` uses every core; 0 or 1 decodes in this process. Unreadable photos are
    left out and listed in `skipped` (the cache remembers them too).
    """
    _check_image_size(image_size)
    if not photos.paths:
        raise DataError(f"{photos.root}: no photos to decode")
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    key = cache_key(photos.paths, image_size, grayscale)
    entry = cache_dir / key
    photo_shape = (1 if grayscale else 3, image_size, image_size)
    decoded = 0
    cached = _read_entry(entry, len(photos.paths), photo_shape)
    if cached is None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DataError(
                f"{cache_dir}: can't create the photo cache ({error.strerror}); "
                "set CATDOG_CACHE_DIR to a writable folder"
            ) from error
        with _exclusive(cache_dir / f"{key}.lock"):
            # Whoever held the lock before us may have written this very entry.
            cached = _read_entry(entry, len(photos.paths), photo_shape)
            if cached is None:
                _remove_leftovers(cache_dir, key)
                _write_entry(entry, photos, image_size, grayscale, workers, progress)
                decoded = len(photos.paths)
                cached = _read_entry(entry, len(photos.paths), photo_shape)
                if cached is None:
                    raise DataError(f"{entry}: the cache just written can't be read back")
    pixels, skipped_rows = cached
    keep = np.ones(len(photos.paths), dtype=bool)
    keep[skipped_rows] = False
    return DecodedImages(
        pixels=pixels,
        paths=[path for path, kept in zip(photos.paths, keep, strict=True) if kept],
        labels=photos.labels[keep],
        skipped=[photos.paths[row] for row in skipped_rows],
        cache_file=entry / "pixels.npy",
        decoded=decoded,
    )


def _check_image_size(image_size: int) -> None:
    if not isinstance(image_size, int) or image_size < 1:
        raise DataError(f"image_size={image_size!r}: must be a positive whole number of pixels")


# EXIF orientation tag value -> the transpose that shows the photo upright.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _exif_orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # broken EXIF data shouldn't cost a photo: keep it as stored
        return 1


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    method = _UPRIGHT.get(orientation)
    return image if method is None else image.transpose(method)


def _eight_bit(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
    elif image.mode == "I":
        scale = 1 / 257 if values.size and values.max() > 255 else 1.0
    else:
        scale = 1 / 257  # 65535 / 257 = 255
    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8))


def _read_entry(
    entry: Path, count: int, photo_shape: tuple[int, int, int]
) -> tuple[np.ndarray, list[int]] | None:
    """(pixels memmap, skipped rows) of a complete, consistent cache entry, else None."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        pixels = np.load(entry / "pixels.npy", mmap_mode="r")
        rows = sorted(int(row) for row in meta["skipped"])
    except (OSError, ValueError, TypeError, KeyError):  # missing, partial or foreign files
        return None
    consistent = (
        meta.get("version") == CACHE_VERSION
        and meta.get("count") == count
        and pixels.dtype == np.uint8
        and pixels.shape == (count - len(rows), *photo_shape)
    )
    return (pixels, rows) if consistent else None


def _write_entry(
    entry: Path,
    photos: PhotoSet,
    image_size: int,
    grayscale: bool,
    workers: int | None,
    progress: bool,
) -> None:
    if entry.exists():  # inconsistent (it was just read and rejected): replace it
        shutil.rmtree(entry)
    temp = entry.with_name(f"{entry.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    temp.mkdir()
    try:
        channels = 1 if grayscale else 3
        shape = (len(photos.paths), channels, image_size, image_size)
        every = np.lib.format.open_memmap(temp / "all.npy", "w+", np.uint8, shape)
        failed = _decode_into(every, photos.paths, image_size, grayscale, workers, progress)
        if len(failed) == len(photos.paths):
            first = photos.paths[0]
            raise DataError(
                f"{photos.root}: none of the {len(failed)} photos can be decoded "
                f"(first: {first}: {failed[0]}); check the files are images"
            )
        _save_readable(every, sorted(failed), temp / "pixels.npy")
        del every
        (temp / "all.npy").unlink(missing_ok=True)
        meta = {
            "version": CACHE_VERSION,
            "count": len(photos.paths),
            "image_size": image_size,
            "grayscale": grayscale,
            "skipped": {str(row): reason for row, reason in sorted(failed.items())},
        }
        (temp / "meta.json").write_text(json.dumps(meta, indent=1))
        for name in ("pixels.npy", "meta.json"):  # on disk before the rename publishes them
            _fsync(temp / name)
        try:
            os.rename(temp, entry)
        except OSError:
            if _read_entry(entry, len(photos.paths), shape[1:]) is None:
                raise
            # Another writer (without a working lock) got there first with the same bytes.
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _save_readable(every: np.ndarray, failed_rows: list[int], target: Path) -> None:
    """Write the rows of `every` not in `failed_rows` to `target`, chunk by chunk."""
    every.flush()
    if not failed_rows:
        os.rename(every.filename, target)
        return
    keep = np.setdiff1d(np.arange(len(every)), failed_rows)
    readable = np.lib.format.open_memmap(target, "w+", np.uint8, (len(keep), *every.shape[1:]))
    step = max(1, (64 << 20) // max(1, every[0].nbytes))
    for start in range(0, len(keep), step):
        readable[start : start + step] = every[keep[start : start + step]]
    readable.flush()


def _decode_into(
    out: np.ndarray,
    paths: list[Path],
    image_size: int,
    grayscale: bool,
    workers: int | None,
    progress: bool,
) -> dict[int, str]:
    """Decode `paths` into the rows of `out`; return {row: reason} for unreadable photos."""
    workers = _cpu_count() if workers is None else workers
    # ~8 chunks per worker balances the load; each chunk's pixels cross the pipe as one array.
    size = max(1, min(256, math.ceil(len(paths) / (max(workers, 1) * 8))))
    chunks = [(start, paths[start : start + size]) for start in range(0, len(paths), size)]
    failed: dict[int, str] = {}
    with tqdm(
        total=len(paths), desc=f"decoding {len(paths)} photos", unit="photo", disable=not progress
    ) as bar:
        for start, pixels, chunk_failed in _decode_chunks(
            chunks, image_size, grayscale, min(workers, len(chunks))
        ):
            out[start : start + len(pixels)] = pixels
            failed.update(chunk_failed)
            bar.update(len(pixels))
    return failed


def _decode_chunks(
    chunks: list[tuple[int, list[Path]]], image_size: int, grayscale: bool, workers: int
) -> Iterator[tuple[int, np.ndarray, dict[int, str]]]:
    if workers <= 1:
        for start, paths in chunks:
            yield _decode_chunk(start, paths, image_size, grayscale)
        return
    # Linux: fork, as torch's DataLoader does; workers run only Pillow and numpy, start at
    # once, and don't re-import the caller's script. Elsewhere fork is unsafe: the default.
    context = get_context("fork" if sys.platform == "linux" else None)
    pool = ProcessPoolExecutor(workers, mp_context=context)
    try:
        futures = [
            pool.submit(_decode_chunk, start, paths, image_size, grayscale)
            for start, paths in chunks
        ]
        for future in as_completed(futures):
            yield future.result()
    finally:
        # After an error or Ctrl-C, drop the chunks not started rather than decode them all.
        pool.shutdown(wait=True, cancel_futures=True)


def _decode_chunk(
    start: int, paths: list[Path], image_size: int, grayscale: bool
) -> tuple[int, np.ndarray, dict[int, str]]:
    channels = 1 if grayscale else 3
    pixels = np.zeros((len(paths), channels, image_size, image_size), dtype=np.uint8)
    failed = {}
    for offset, path in enumerate(paths):
        try:
            pixels[offset] = decode_photo(path, image_size, grayscale)
        except UnreadablePhotoError as error:
            failed[start + offset] = str(error.__cause__ or error)
    return start, pixels, failed


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file`; the OS releases it if this process dies."""
    if fcntl is None:
        yield
        return
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(cache_dir: Path, key: str) -> None:
    """Delete temporary folders of writers of `key` that died (we hold the key's lock)."""
    if fcntl is None:  # no lock: a leftover may be a live writer's
        return
    for leftover in cache_dir.glob(f"{key}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
