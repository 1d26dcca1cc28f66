"""Paths as the user meant them, and commands as the user can run them.

- `~` and `$VARIABLES` are expanded in every path key and option: bash expands `~` only at the
  start of a word, never after `--set data.root=`.
- A run keeps `data.root` and `data.cache_dir` absolute, so its folder works from anywhere;
  what the user typed goes into config.yaml as a comment, for the record. `output.dir` stays
  as given (runs go where it says, relative to where catdog runs).
- The hints catdog prints (`evaluate with: ...`) spell the command the way it was invoked.
"""

import os
import re
import shlex
import shutil
import sys
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from catdog.config import Config


def expand_path(value: str | os.PathLike[str]) -> str:
    """`~`, `~user` and `$VARIABLE` / `${VARIABLE}` expanded; nothing else changes."""
    return os.path.expandvars(os.path.expanduser(os.fspath(value)))


def expanded(value: str | os.PathLike[str] | None) -> Path | None:
    """`expand_path` for an optional CLI path option."""
    return None if value is None else Path(expand_path(value))


def absolute(value: str) -> str:
    """`value` expanded and made absolute (against the current folder), not resolving links."""
    return os.path.abspath(expand_path(value))


_typed: ContextVar[dict[str, str] | None] = ContextVar("typed_paths", default=None)


def absolute_paths(config: "Config") -> "Config":
    """`config` with data.root and data.cache_dir absolute, so the run's folder works from
    anywhere; what was typed is kept (`typed_paths_comment`) for the run's config.yaml."""
    typed = {"data.root": config.data.root, "data.cache_dir": config.data.cache_dir}
    root = absolute(config.data.root)
    cache = absolute(config.data.cache_dir) if config.data.cache_dir else None
    _typed.set({k: v for k, v in typed.items() if v is not None and v != absolute(v)})
    data = config.data.model_copy(update={"root": root, "cache_dir": cache})
    return config.model_copy(update={"data": data})


def typed_paths_comment() -> str:
    """config.yaml's record of the paths as given, where they differ from what it stores."""
    typed = _typed.get() or {}
    here = os.getcwd()
    return "".join(f"# {key} as given: {value} (in {here})\n" for key, value in typed.items())


_STAMP = re.compile(r"-\d{8}-\d{6}(-\d+)?$")


def run_label(config_path: str | os.PathLike[str] | None) -> str:
    """The run name's stem: the config file's, or for a run's own config.yaml the run's
    (`runs/sgd-20261202-101500/config.yaml` → `sgd`), so a re-run is named like the original."""
    if config_path is None:
        return "run"
    path = Path(config_path)
    if path.name == "config.yaml" and path.parent.name:
        stem = _STAMP.sub("", path.resolve().parent.name)
        return stem or "run"
    return path.stem


def command() -> str:
    """How to call catdog again, as this process was called: `catdog` when that is on the PATH
    and is this one, else the path typed (`.venv/bin/catdog`), else `python -m catdog`."""
    invoked = sys.argv[0] if sys.argv else "catdog"
    if os.environ.get("CATDOG_COMMAND"):  # set by `--nproc` for its workers
        return os.environ["CATDOG_COMMAND"]
    if Path(invoked).name in ("__main__.py", "-m", "-c", ""):
        python = shutil.which("python")
        same = python and Path(python).resolve() == Path(sys.executable).resolve()
        return f"{'python' if same else shlex.quote(sys.executable)} -m catdog"
    on_path = shutil.which("catdog")
    if on_path and Path(on_path).resolve() == Path(invoked).resolve():
        return "catdog"
    return shlex.quote(invoked)
