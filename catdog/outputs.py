"""Files the user asked for (--out, --kaggle, --report, export): checked first, written whole.

Every target is checked before any work starts, so a typo costs nothing; and each file is
written under a temporary name beside its target and renamed into place, so an error or a
Ctrl-C never leaves half a file, nor clobbers the one already there.
"""

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from catdog.errors import ConfigError


def check_new_file(path: Path, option: str, force: bool = False) -> Path:
    """Refuse a target whose folder is missing, or which exists (unless `force`)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file name")
    if not path.parent.is_dir():
        raise ConfigError(f"{option} {path}: no such folder {path.parent}; create it first")
    if path.exists() and not force:
        raise ConfigError(f"{option} {path}: already exists; pass --force to replace it")
    return path


def check_new_folder(path: Path, option: str, force: bool = False) -> Path:
    """Like `check_new_file` for a folder of results: an existing empty folder is fine."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: is a file; give a folder name")
    if not path.parent.is_dir():
        raise ConfigError(f"{option} {path}: no such folder {path.parent}; create it first")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise ConfigError(f"{option} {path}: not empty; pass --force to replace its files")
    return path


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


@contextmanager
def written(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed over `path`, else removed."""
    temporary = _temporary(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> Path:
    with written(path) as temporary:
        temporary.write_text(text)
    return path


@contextmanager
def written_folder(path: Path) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success its files move into `path` (made if absent)."""
    temporary = _temporary(path)
    temporary.mkdir()
    try:
        yield temporary
        if not path.exists():
            os.rename(temporary, path)
            return
        for item in temporary.iterdir():
            os.replace(item, path / item.name)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
