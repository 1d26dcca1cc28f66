"""Decode every photo once, into one uint8 array cached on disk and memory-mapped.

A photo becomes a (C, S, S) uint8 array (see `catdog.decode`). All photos together are one
`(N, C, S, S)` `.npy` file in a cache folder, keyed by a hash of the photo files (resolved
path, size, mtime, ctime and inode), S, the colour mode and `CACHE_VERSION`; any change to
them gives a new key, so a new decode. ctime and inode can't be set back by `cp -p`,
`rsync -t` or `touch -r`, so a photo replaced by same-size content is noticed too.

A cache entry is a folder `<key>/` holding `pixels.npy` and `meta.json`. It is written
under a temporary name and renamed into place in one step, so a reader sees both files or
neither, and a killed writer leaves only a temporary folder that is never read. Writers of
the same key take turns through a lock (`catdog.cache_lock`) that the kernel drops when its
owner dies, so two runs started together decode once, and a killed run blocks nobody.

Nothing in an entry is trusted: `meta.json` is checked against the photos, the pixel file
against its size, and its bytes against the CRC-32 written with them (a few GB/s, measured in
scripts/bench_cache_check.py). An entry that fails is decoded again, with one warning.
"""

import errno
import hashlib
import json
import math
import os
import secrets
import shutil
import stat
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from catdog import cache_lock
from catdog.cache_lock import holding
from catdog.data import PhotoSet
from catdog.decode import (  # noqa: F401 (decode_photo, to_mode, RESAMPLE: the public API)
    DRAFT_FACTOR,
    RESAMPLE,
    check_image_size,
    decode_photo,
    to_mode,
)
from catdog.decode_pool import chunked, cpu_count, decoded_chunks
from catdog.errors import DataError, UnreadablePhotoError  # noqa: F401 (re-exported)
from catdog.pixel_file import PixelFile, checksum

# Bump when decoding or the entry's files change: old caches then miss.
CACHE_VERSION = 2
_FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


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


class DamagedEntry(Exception):
    """A cache entry that exists but can't be used as it is; the message says why."""


def default_cache_dir() -> Path:
    """`$CATDOG_CACHE_DIR`, else `$XDG_CACHE_HOME/catdog`, else `~/.cache/catdog`."""
    if folder := os.environ.get("CATDOG_CACHE_DIR"):
        return Path(folder)
    if folder := os.environ.get("XDG_CACHE_HOME"):
        return Path(folder) / "catdog"
    return Path.home() / ".cache" / "catdog"


def cache_key(paths: Sequence[Path], image_size: int, grayscale: bool) -> str:
    """Hash of the settings and each photo's resolved path, size, mtime, ctime and inode.

    A photo that can't be looked up (a link to nowhere or to itself) enters the key as
    unreadable: decoding then skips it, and once it is fixed the key changes.
    """
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
            line = f"{os.path.abspath(path)}\tunreadable {error.errno}\n"
        else:
            line = (
                f"{real}\t{info.st_size}\t{info.st_mtime_ns}\t{info.st_ctime_ns}\t{info.st_ino}\n"
            )
        digest.update(os.fsencode(line))  # file names needn't be valid UTF-8
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
    check_image_size(image_size)
    if not photos.paths:
        raise DataError(f"{photos.root}: no photos to decode")
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    key = cache_key(photos.paths, image_size, grayscale)
    entry = cache_dir / key
    photo_shape = (1 if grayscale else 3, image_size, image_size)
    decoded = 0
    try:
        cached = open_entry(entry, len(photos.paths), photo_shape)
    except DamagedEntry:
        cached = None  # looked at again under the lock, before anyone rewrites it
    if cached is None:
        _make_folder(cache_dir)
        lock = cache_dir / f"{key}.lock"
        size = entry_bytes(len(photos.paths), photo_shape)
        with _cache_errors(cache_dir, size), holding(lock, f"the photo cache entry {entry}"):
            cached, decoded = _open_or_write(entry, photos, photo_shape, workers, progress)
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


def _open_or_write(
    entry: Path,
    photos: PhotoSet,
    photo_shape: tuple[int, int, int],
    workers: int | None,
    progress: bool,
) -> tuple[tuple[np.ndarray, list[int]], int]:
    """(The entry, photos decoded): read, or written first. The caller holds the key's lock."""
    count = len(photos.paths)
    try:
        # Whoever held the lock before us may have written this very entry.
        cached = open_entry(entry, count, photo_shape)
    except DamagedEntry as damage:
        _warn(f"warning: the photo cache entry {entry} {damage}; decoding again")
        cached = None
    if cached is not None:
        return cached, 0
    _remove_leftovers(entry.parent, entry.name)
    _write_entry(entry, photos, photo_shape[1], photo_shape[0] == 1, workers, progress)
    try:
        cached = open_entry(entry, count, photo_shape)
    except DamagedEntry as damage:
        raise DataError(f"{entry}: the cache just written {damage}") from None
    if cached is None:
        raise DataError(f"{entry}: the cache just written has vanished")
    return cached, count


def entry_bytes(count: int, photo_shape: tuple[int, int, int]) -> int:
    return count * math.prod(photo_shape)


def open_entry(
    entry: Path, count: int, photo_shape: tuple[int, int, int]
) -> tuple[np.ndarray, list[int]] | None:
    """(pixels memmap, skipped rows) of a complete, consistent entry; None if there is none.

    Raises `DamagedEntry` for an entry that exists but is incomplete, inconsistent or changed.
    """
    try:
        kind = os.lstat(entry).st_mode
    except FileNotFoundError:
        return None
    except OSError as error:
        raise DamagedEntry(f"can't be looked at ({error.strerror})") from None
    if not stat.S_ISDIR(kind):
        raise DamagedEntry("is not a folder")
    try:
        meta = json.loads((entry / "meta.json").read_bytes())
    except (OSError, ValueError) as error:
        raise DamagedEntry(f"has no readable meta.json ({type(error).__name__})") from None
    rows = _skipped_rows(meta, count)
    try:
        pixels = np.load(entry / "pixels.npy", mmap_mode="r", allow_pickle=False)
        size = os.path.getsize(entry / "pixels.npy")
    except Exception as error:  # numpy raises many types (EOFError for an empty file)
        raise DamagedEntry(f"has no readable pixels.npy ({type(error).__name__})") from None
    expected = (count - len(rows), *photo_shape)
    if not isinstance(pixels, np.memmap) or pixels.dtype != np.uint8 or pixels.shape != expected:
        raise DamagedEntry(f"holds pixels of shape {pixels.shape}, not {expected}")
    if size != pixels.offset + pixels.nbytes:
        raise DamagedEntry(f"has a pixels.npy of {size} bytes, not {pixels.offset + pixels.nbytes}")
    if checksum(pixels) != meta.get("crc32"):
        raise DamagedEntry("has pixels that changed since they were written (CRC-32 differs)")
    return pixels, rows


def _skipped_rows(meta: object, count: int) -> list[int]:
    if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION:
        raise DamagedEntry("has a meta.json of another version or program")
    if meta.get("count") != count or not isinstance(meta.get("skipped"), dict):
        raise DamagedEntry(f"has a meta.json that doesn't describe these {count} photos")
    try:
        rows = sorted(int(row) for row in meta["skipped"])
    except (TypeError, ValueError):
        raise DamagedEntry("has a meta.json whose skipped rows aren't row numbers") from None
    if len(set(rows)) != len(rows) or any(not 0 <= row < count for row in rows):
        raise DamagedEntry(f"has a meta.json whose skipped rows aren't rows of {count} photos")
    return rows


def _write_entry(
    entry: Path,
    photos: PhotoSet,
    image_size: int,
    grayscale: bool,
    workers: int | None,
    progress: bool,
) -> None:
    _remove(entry)  # damaged (it was just read and rejected): replace it
    temp = entry.with_name(f"{entry.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    temp.mkdir()
    try:
        channels = 1 if grayscale else 3
        pixel_file = PixelFile(
            temp / "pixels.npy", (len(photos.paths), channels, image_size, image_size)
        )
        try:
            failed = _decode_into(
                pixel_file, photos.paths, image_size, grayscale, workers, progress
            )
            if len(failed) == len(photos.paths):
                first = photos.paths[0]
                raise DataError(
                    f"{photos.root}: none of the {len(failed)} photos can be decoded "
                    f"(first: {first}: {failed[0]}); check the files are images"
                )
            pixel_file.drop_rows(sorted(failed))
        finally:
            pixel_file.close()
        meta = {
            "version": CACHE_VERSION,
            "count": len(photos.paths),
            "image_size": image_size,
            "grayscale": grayscale,
            "crc32": checksum(np.load(temp / "pixels.npy", mmap_mode="r")),
            "skipped": {str(row): reason for row, reason in sorted(failed.items())},
        }
        with open(temp / "meta.json", "w") as file:  # on disk before the rename publishes it
            file.write(json.dumps(meta, indent=1))
            file.flush()
            os.fsync(file.fileno())
        os.rename(temp, entry)
        _fsync_folder(entry.parent)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _decode_into(
    out: PixelFile,
    paths: list[Path],
    image_size: int,
    grayscale: bool,
    workers: int | None,
    progress: bool,
) -> dict[int, str]:
    """Decode `paths` into the rows of `out`; return {row: reason} for unreadable photos."""
    workers = cpu_count() if workers is None else workers
    chunks = chunked(paths, workers)
    failed: dict[int, str] = {}
    bar = tqdm(
        total=len(paths), desc=f"decoding {len(paths)} photos", unit="photo", disable=not progress
    )
    with bar, decoded_chunks(chunks, image_size, grayscale, min(workers, len(chunks))) as done:
        for start, pixels, chunk_failed in done:
            out.write_rows(start, pixels)
            failed.update(chunk_failed)
            bar.update(len(pixels))
    return failed


@contextmanager
def _cache_errors(cache_dir: Path, entry_size: int) -> Iterator[None]:
    """Turn a full disk or an unwritable folder into one DataError that says what to do."""
    try:
        yield
    except OSError as error:
        if error.errno in _FULL_DISK:
            megabytes = max(1, math.ceil(entry_size / 1e6))
            raise DataError(
                f"not enough space in {cache_dir} for {megabytes} MB; "
                "free space or set data.cache_dir"
            ) from None
        if error.errno in _UNWRITABLE:
            raise DataError(
                f"{cache_dir}: can't write the photo cache here ({error.strerror}); "
                "set data.cache_dir or CATDOG_CACHE_DIR to a writable folder"
            ) from None
        raise


def _make_folder(cache_dir: Path) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(
            f"{cache_dir}: can't create the photo cache ({error.strerror}); "
            "set data.cache_dir or CATDOG_CACHE_DIR to a writable folder"
        ) from None


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _remove(path: Path) -> None:
    """Remove whatever is at `path`: a folder, a file or a link."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _remove_leftovers(cache_dir: Path, key: str) -> None:
    """Delete temporary folders of writers of `key` that died (we hold the key's lock)."""
    if cache_lock.fcntl is None:  # no lock: a leftover may be a live writer's
        return
    for leftover in cache_dir.glob(f"{key}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` survive a power failure (a no-op where folders can't be)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
