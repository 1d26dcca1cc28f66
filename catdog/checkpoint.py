"""Checkpoints: written atomically, read only with `torch.load(weights_only=True)`.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so loading one never
runs code: a file whose unpickling would import or call anything is refused.
"""

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from catdog.errors import CheckpointError

FORMAT = "catdog-checkpoint-v1"
REQUIRED = ("format", "model", "config", "normalization")


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename over `path`.

    A process killed at any moment leaves either the old file or the new one, never half of one.
    """
    payload = {"format": FORMAT, **payload}
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
    payload["path"] = str(path)
    return payload
