"""One writer per cache entry, through a lock that dies with its owner and is never inherited.

The lock is a POSIX record lock (`fcntl.lockf`) on a small file beside the entry. Such a lock
belongs to the process that took it: a forked child (a decode worker) does not share it, and
the kernel drops it the moment its owner exits, however it dies (kill -9, the OOM killer), so
the next process takes it over at once. `flock` differs on exactly this point: the lock sits
on the open file, which forked children share and keep alive.

The owner writes its pid into the file, so that a process kept waiting can say whom it waits
for. One rule comes with record locks: closing *any* descriptor of the lock file releases the
process's lock, so nothing in the owner opens that file a second time.
"""

import errno
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: the atomic rename alone keeps the cache consistent
    fcntl = None  # type: ignore[assignment]

PATIENCE_S = 1.0  # how long a waiter stays silent before it says what it waits for
POLL_S = 0.05


@contextmanager
def holding(lock_file: Path, what: str) -> Iterator[None]:
    """Hold the exclusive lock on `lock_file`, waiting (and saying so) while another has it.

    `what` names the thing the lock guards, for the one line a waiting process prints.
    Raises OSError where the lock file can't be created (a read-only or unwritable folder).
    """
    if fcntl is None:
        yield
        return
    descriptor = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        _wait_for_lock(descriptor, what)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
        os.ftruncate(descriptor, 0)
    finally:
        os.close(descriptor)  # releases the lock


def lock_owner(descriptor: int) -> int | None:
    """The pid the lock's owner wrote into the file, if any (read through our descriptor)."""
    try:
        return int(os.pread(descriptor, 32, 0).decode().strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _wait_for_lock(descriptor: int, what: str) -> None:
    said = False
    started = time.monotonic()
    while True:
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EAGAIN):
                raise
        if not said and time.monotonic() - started >= PATIENCE_S:
            owner = lock_owner(descriptor)
            holder = f"process {owner}" if owner else "another process"
            print(
                f"waiting for {what}: {holder} is writing it (it goes on when that one "
                "finishes or dies)",
                file=sys.stderr,
                flush=True,
            )
            said = True
        time.sleep(POLL_S)


class Held(Exception):
    """The lock is another process's; `owner` is its pid, where it wrote one."""

    def __init__(self, owner: int | None) -> None:
        super().__init__(f"held by process {owner}" if owner else "held by another process")
        self.owner = owner


@contextmanager
def holding_now(lock_file: Path) -> Iterator[None]:
    """Hold the lock on `lock_file` or raise `Held` at once; the file is removed on release.

    For a lock that refuses rather than waits (a run folder trained by one process). The
    file goes away with the lock, so a folder holds it only while someone works in it; a
    process that locked a file just removed (a stale inode) starts again on the new one.
    """
    if fcntl is None:
        yield
        return
    while True:
        descriptor = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            owner = lock_owner(descriptor)
            os.close(descriptor)
            if error.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            raise Held(owner) from None
        try:
            current = os.stat(lock_file)
        except FileNotFoundError:
            current = None
        if current is not None and current.st_ino == os.fstat(descriptor).st_ino:
            break
        os.close(descriptor)  # removed by its last owner as we opened it: take the new one
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        Path(lock_file).unlink(missing_ok=True)
        os.close(descriptor)
