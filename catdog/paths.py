"""Paths as the user meant them, and commands as the user can run them.

- `~` and `$VARIABLES` are expanded in every path key and option: bash expands `~` only at the
  start of a word, never after `--set data.root=`.
- A run keeps `data.root` (and the cache folder) absolute, so its folder works from anywhere;
  what the user typed goes into config.yaml as a comment, for the record.
- The hints catdog prints (`evaluate with: ...`) spell the command the way it was invoked.
"""

import os
import re
import shlex
import shutil
import sys
from pathlib import Path

# The config keys that hold paths; `output.dir` stays as given (runs go where it says, relative
# to where catdog runs, as people expect of an output folder).
PATH_KEYS = ("data.root", "data.cache_dir")


def expand_path(value: str | os.PathLike[str]) -> str:
    """`~`, `~user` and `$VARIABLE` / `${VARIABLE}` expanded; nothing else changes."""
    return os.path.expandvars(os.path.expanduser(os.fspath(value)))


def expanded(value: str | os.PathLike[str] | None) -> Path | None:
    """`expand_path` for an optional CLI path option."""
    return None if value is None else Path(expand_path(value))


def absolute(value: str) -> str:
    """`value` expanded and made absolute (against the current folder), not resolving links."""
    return os.path.abspath(expand_path(value))


def typed_paths_comment(typed: dict[str, str], resolved: dict[str, str]) -> str:
    """The config.yaml lines recording what was typed where it differs from what was stored."""
    lines = [
        f"# {key} as given: {typed[key]} (in {os.getcwd()})"
        for key in typed
        if typed[key] != resolved.get(key)
    ]
    return "".join(f"{line}\n" for line in lines)


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
