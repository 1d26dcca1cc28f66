"""Decode chunks of photos on every core, in workers that never outlive their parent.

A worker asks the kernel to kill it when its parent dies (Linux `prctl(PR_SET_PDEATHSIG)`), and
exits at once if the parent is already gone by then, so a parent killed with kill -9 or by the
OOM killer leaves no orphans that hold memory. Workers ignore Ctrl-C: the terminal sends it to
the whole process group, and the parent alone decides what to do with it.
"""

import ctypes
import math
import os
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from catdog.decode import decode_photo
from catdog.errors import DataError, UnreadablePhotoError

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

Chunk = tuple[int, np.ndarray, dict[int, str]]  # first row, pixels, {row: why unreadable}


def chunked(paths: list[Path], workers: int) -> list[tuple[int, list[Path]]]:
    """(first row, paths) chunks: ~8 per worker balances the load, at most 256 photos each."""
    size = max(1, min(256, math.ceil(len(paths) / (max(workers, 1) * 8))))
    return [(start, paths[start : start + size]) for start in range(0, len(paths), size)]


@contextmanager
def decoded_chunks(
    chunks: list[tuple[int, list[Path]]], image_size: int, grayscale: bool, workers: int
) -> Iterator[Iterator[Chunk]]:
    """Yield an iterator over the decoded chunks, in the order they finish.

    Leaving the block, normally or by an error, stops the pool: chunks not yet started are
    dropped, and no worker is left running.
    """
    if workers <= 1:
        yield (decode_chunk(start, paths, image_size, grayscale) for start, paths in chunks)
        return
    # Linux: fork, as torch's DataLoader does; workers run only Pillow and numpy, start at
    # once, and don't re-import the caller's script. Elsewhere fork is unsafe: the default.
    context = get_context("fork" if sys.platform == "linux" else None)
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),)
    )
    try:
        futures = [
            pool.submit(decode_chunk, start, paths, image_size, grayscale)
            for start, paths in chunks
        ]
        yield _results(futures)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _results(futures: list) -> Iterator[Chunk]:
    try:
        for future in as_completed(futures):
            yield future.result()
    except BrokenProcessPool:
        raise DataError(
            "a photo-decoding worker died (killed by the system, most often for lack of "
            "memory); set data.workers lower, or 0 to decode in one process"
        ) from None


def die_with_parent(parent: int) -> None:
    """Pool initializer: be killed with the parent, and leave Ctrl-C to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


def decode_chunk(start: int, paths: list[Path], image_size: int, grayscale: bool) -> Chunk:
    channels = 1 if grayscale else 3
    pixels = np.zeros((len(paths), channels, image_size, image_size), dtype=np.uint8)
    failed = {}
    for offset, path in enumerate(paths):
        try:
            pixels[offset] = decode_photo(path, image_size, grayscale)
        except UnreadablePhotoError as error:
            failed[start + offset] = str(error.__cause__ or error)
    return start, pixels, failed


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
