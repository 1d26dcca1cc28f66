"""Checkpoints: written atomically, read only with `torch.load(weights_only=True)`.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so loading one never
runs code: a file whose unpickling would import or call anything is refused.
"""

import errno
import glob
import io
import math
import os
import pickle
import secrets
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from catdog.errors import CheckpointError

FORMAT = "catdog-checkpoint-v1"
REQUIRED = ("format", "model", "config", "normalization")


def save_checkpoint(payload: dict[str, Any], path: Path, *copies: Path) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename over `path`.

    A process killed at any moment leaves either the old file or the new one, never half of
    one; the temporary files such a kill leaves are removed by the next write of `path`. The
    folder is flushed after the rename too, so a power failure can't lose the rename. The file
    gets the usual permissions (0666 less the umask), as the run's other files do. A full disk
    is a `CheckpointError` naming the size, and the previous file is kept.

    Each of `copies` (best.pt beside last.pt) then gets the same bytes the same way: a hard
    link to `path`'s new file, renamed into place, where the file system has them (no second
    serialisation or write; `path` itself is only ever replaced, never written in place, so
    the two stay independent), else written again.
    """
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buffer)
    data = buffer.getbuffer()
    _write_atomically(data, path)
    for copy in copies:
        try:
            _replace_with(copy, lambda temporary: os.link(path, temporary))
        except OSError:
            _write_atomically(data, copy)


def _write_atomically(data: memoryview, path: Path) -> None:
    def write(temporary: Path) -> None:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())

    try:
        _replace_with(path, write)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CheckpointError(
                f"not enough space in {path.parent} for {max(1, math.ceil(len(data) / 1e6))} MB "
                f"to write {path.name}; free space (the previous {path.name} is kept)"
            ) from None
        raise


def _replace_with(path: Path, make: Callable[[Path], None]) -> None:
    """`make` a temporary file beside `path`, then rename it over `path` and flush the folder;
    on any failure the temporary file is removed and `path` is untouched."""
    for leftover in path.parent.glob(temporaries_of(path.name)):
        leftover.unlink(missing_ok=True)  # a writer killed mid-write (the run is ours alone)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        make(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def temporaries_of(name: str) -> str:
    """The glob (and fnmatch) pattern of the temporary files `save_checkpoint` writes for `name`."""
    return f".{glob.escape(name)}.*.tmp"


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename) to disk; a no-op where folders can't be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse fsync on folders
    finally:
        os.close(descriptor)


def resolve_checkpoint(target: str | Path, prefer: str = "best.pt") -> Path:
    """A checkpoint file, or a run folder (its `best.pt`, else `last.pt`)."""
    target = Path(target)
    if target.is_dir():
        for name in (prefer, "best.pt", "last.pt"):
            if (target / name).is_file():
                return target / name
        raise CheckpointError(
            f"{target}: no best.pt or last.pt in this folder; is it a catdog run folder?"
        )
    if not target.exists():
        raise CheckpointError(f"{target}: no such run folder or checkpoint")
    return target


def load_checkpoint(
    target: str | Path, prefer: str = "best.pt", map_location: Any = "cpu"
) -> dict[str, Any]:
    path = resolve_checkpoint(target, prefer)
    try:
        with warnings.catch_warnings():  # e.g. on legacy pickles, which are refused below
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # weights_only refuses any global it does not know: that is what keeps us safe.
        reason = str(error).splitlines()[0] if str(error) else "unsafe content"
        if "Weights only load failed" in reason or "Unsupported" in str(error):
            reason = "it holds objects other than tensors and plain data"
        raise CheckpointError(
            f"{path}: refused to load: {reason}; only load checkpoints you trust"
        ) from None
    except Exception as error:  # torch raises many kinds for a file that is not a checkpoint
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(error).__name__})"
        ) from None
    if (
        not isinstance(payload, dict)
        or payload.get("format") != FORMAT
        or any(k not in payload for k in REQUIRED)
    ):
        raise CheckpointError(
            f"{path}: not a catdog checkpoint (made by another program or version)"
        )
    problem = _incomplete(payload)
    if problem:
        raise CheckpointError(f"{path}: a damaged catdog checkpoint ({problem}); train it again")
    payload["path"] = str(path)
    return payload


def load_weights(module: torch.nn.Module, payload: dict[str, Any]) -> None:
    """Load `payload["model"]` into `module`, built from the checkpoint's own config.

    Weights that don't fit (a file edited or damaged, or a config changed by hand) are one
    `CheckpointError`, naming the first mismatch, instead of torch's page of text.
    """
    try:
        module.load_state_dict(payload["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as error:
        # torch's first line names the class; the second, the first mismatched tensor.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0] if lines else type(error).__name__
        raise CheckpointError(
            f"{payload.get('path', 'checkpoint')}: its weights don't match its own config "
            f"({_short(detail)}); the file was changed or damaged"
        ) from None


def _incomplete(payload: dict[str, Any]) -> str | None:
    """What is missing or malformed in a catdog checkpoint's parts, or None."""
    model, config, norm = payload["model"], payload["config"], payload["normalization"]
    if not isinstance(model, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()
    ):
        return "model is not a table of named tensors"
    if not isinstance(config, dict):
        return "config is not a table"
    if not isinstance(norm, dict):
        return "normalization is not a table"
    for key in ("mean", "std"):
        if key not in norm:
            return f"normalization.{key} is missing"
        try:
            values = torch.as_tensor(norm[key], dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            return f"normalization.{key} is not a list of numbers"
        if values.ndim != 1 or len(values) == 0 or not torch.isfinite(values).all():
            return f"normalization.{key} is not a list of finite numbers"
        if key == "std" and not (values > 0).all():
            return "normalization.std has a value that is not positive"
    return None


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
