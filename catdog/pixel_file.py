"""A uint8 `.npy` file written with ordinary writes, its space reserved before the first row.

The cache used to write its pixels into a memory map, where a full disk is not an error but
a SIGBUS that kills the process. Here the whole file is reserved first (`posix_fallocate`),
so a disk too small fails at once with ENOSPC, and rows then go in with `pwrite`, whose
failures are OSErrors too. Rows may arrive in any order; unreadable ones are dropped at the
end by moving the others down in place, so the file never needs twice its size.
"""

import errno
import io
import os
import zlib
from pathlib import Path

import numpy as np


def npy_header(shape: tuple[int, ...]) -> bytes:
    """The `.npy` header (format 1.0) of a C-ordered uint8 array of `shape`."""
    header = io.BytesIO()
    descr = np.lib.format.dtype_to_descr(np.dtype(np.uint8))
    info = {"descr": descr, "fortran_order": False, "shape": tuple(int(n) for n in shape)}
    np.lib.format.write_array_header_1_0(header, info)
    return header.getvalue()


def checksum(pixels: np.ndarray) -> int:
    """CRC-32 of the array's bytes (zlib's, a few GB/s), to notice bytes changed on disk."""
    return zlib.crc32(np.ascontiguousarray(pixels).reshape(-1))


class PixelFile:
    """A new `.npy` file of uint8 `shape`, reserved in full on creation."""

    def __init__(self, path: Path, shape: tuple[int, ...]) -> None:
        self.path = path
        self.shape = tuple(shape)
        self.row_bytes = int(np.prod(self.shape[1:]))
        self.header = npy_header(self.shape)
        self.descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            self._write(0, self.header)
            reserve(self.descriptor, len(self.header) + self.shape[0] * self.row_bytes)
        except BaseException:
            os.close(self.descriptor)
            raise

    @property
    def nbytes(self) -> int:
        return len(self.header) + self.shape[0] * self.row_bytes

    def write_rows(self, start: int, rows: np.ndarray) -> None:
        """Write `rows` (uint8, C-contiguous, shape (k, *shape[1:])) as rows start … start+k-1."""
        self._write(len(self.header) + start * self.row_bytes, np.ascontiguousarray(rows).data)

    def drop_rows(self, dropped: list[int]) -> None:
        """Remove the rows `dropped`, keeping the others in order; the header follows."""
        if not dropped:
            return
        keep = np.setdiff1d(np.arange(self.shape[0]), dropped)
        header = npy_header((len(keep), *self.shape[1:]))
        # Row keep[j] moves from old_header + keep[j]*row to new_header + j*row: never up, and
        # each block is read whole before it is written, so nothing is read after it's moved.
        step = max(1, (64 << 20) // max(1, self.row_bytes))
        for first in range(0, len(keep), step):
            block = b"".join(self._read_row(row) for row in keep[first : first + step])
            self._write(len(header) + first * self.row_bytes, block)
        self._write(0, header)
        self.header, self.shape = header, (len(keep), *self.shape[1:])
        os.ftruncate(self.descriptor, self.nbytes)

    def close(self) -> None:
        """Flush to disk and close."""
        try:
            os.fsync(self.descriptor)
        finally:
            os.close(self.descriptor)

    def _read_row(self, row: int) -> bytes:
        offset = len(self.header) + int(row) * self.row_bytes
        data = os.pread(self.descriptor, self.row_bytes, offset)
        if len(data) != self.row_bytes:
            raise OSError(errno.EIO, f"short read in {self.path}")
        return data

    def _write(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            written = os.pwrite(self.descriptor, view, offset)
            view, offset = view[written:], offset + written


def reserve(descriptor: int, size: int) -> None:
    """Allocate `size` bytes on disk now, where the file system can (ENOSPC at once if not)."""
    try:
        os.posix_fallocate(descriptor, 0, size)
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        os.ftruncate(descriptor, size)  # no reservation here: a full disk fails a later write
    except AttributeError:  # no posix_fallocate (macOS)
        os.ftruncate(descriptor, size)
