"""Shell completion for bash, zsh and fish: commands, options, shipped configs and `--set` keys.

`catdog completion SHELL` prints a script; the shell then runs `catdog` with `_CATDOG_COMPLETE`
set and the line so far in `_CATDOG_COMP_LINE`, and Typer's (Click's) machinery finds what the
cursor is on. The line, not bash's COMP_WORDS, because bash splits words at `=`, which every
`--set key=value` has. The `--set` candidates come from the config schema (`schema_docs`), one
level at a time: `optim` → `optimizer.`, `optimizer.` → `optimizer.lr=`, ..., and
`optimizer.name=` → each optimizer's name.
"""

import functools
import json
import os
from pathlib import Path
from typing import Any, ClassVar

try:  # Typer ≥ 0.17 carries its own copy of Click
    from typer._click.shell_completion import (
        CompletionItem,
        ShellComplete,
        add_completion_class,
        split_arg_string,
    )
except ImportError:  # pragma: no cover - older Typer on Click
    from click.shell_completion import (  # type: ignore[no-redef]
        CompletionItem,
        ShellComplete,
        add_completion_class,
        split_arg_string,
    )

SHELLS = ("bash", "zsh", "fish")

_BASH = r"""
_catdog_completion() {
    local IFS=$'\n'
    COMPREPLY=( $(env COMP_WORDBREAKS="$COMP_WORDBREAKS" \
        _CATDOG_COMP_LINE="${COMP_LINE:0:$COMP_POINT}" _CATDOG_COMPLETE=complete_bash "$1" \
        2>/dev/null) )
    # a section (optimizer.), a key (optimizer.lr=) or a folder goes on without a space
    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *[.=/] ]]; then
        compopt -o nospace 2>/dev/null
    fi
    return 0
}
complete -o default -F _catdog_completion catdog
"""

_ZSH = r"""#compdef catdog
_catdog() {
    local -a replies spaced joined
    local IFS=$'\n' reply
    replies=( $(env _CATDOG_COMP_LINE="${(j: :)words[1,CURRENT]}" \
        _CATDOG_COMPLETE=complete_zsh "${words[1]}" 2>/dev/null) )
    if (( ${#replies} == 0 )); then _files; return; fi
    for reply in $replies; do
        if [[ $reply == *[.=/] ]]; then joined+=("$reply"); else spaced+=("$reply"); fi
    done
    (( ${#spaced} )) && compadd -- $spaced
    (( ${#joined} )) && compadd -S '' -- $joined
    return 0  # matches were added: zsh's convention (1 would mean none)
}
compdef _catdog catdog
"""

_FISH = r"""function __catdog_complete
    set -l replies (env _CATDOG_COMP_LINE=(commandline -cp) _CATDOG_COMPLETE=complete_fish \
        (commandline -opc)[1] 2>/dev/null)
    if test (count $replies) -eq 0
        __fish_complete_path (commandline -ct)
    else
        printf '%s\n' $replies
    end
end
complete --command catdog --no-files --arguments '(__catdog_complete)'
"""

SCRIPTS = {"bash": _BASH, "zsh": _ZSH, "fish": _FISH}

# bash's default COMP_WORDBREAKS; the script passes the user's own.
_BASH_WORDBREAKS = " \t\n\"'><=;|&(:"


def completion_script(shell: str) -> str:
    return SCRIPTS[shell].lstrip("\n")


class _LineComplete(ShellComplete):
    """Reads the command line so far from `_CATDOG_COMP_LINE`; values only (files: the shell's)."""

    name: ClassVar[str]

    def source_vars(self) -> dict[str, Any]:
        return {}

    def source(self) -> str:
        return completion_script(self.name)

    def get_completion_args(self) -> tuple[list[str], str]:
        line = os.environ.get("_CATDOG_COMP_LINE", "")
        words = split_arg_string(line)
        incomplete = "" if not words or line[-1:].isspace() else words.pop()
        return words[1:], incomplete

    def values(self) -> tuple[list[CompletionItem], str]:
        args, incomplete = self.get_completion_args()
        items = self.get_completions(args, incomplete)
        # "file" / "dir" items ask the shell to complete paths itself: it does when given none.
        return [item for item in items if item.type == "plain"], incomplete

    def format_completion(self, item: CompletionItem) -> str:
        return str(item.value)

    def complete(self) -> str:
        items, _ = self.values()
        return "\n".join(self.format_completion(item) for item in items)


class BashComplete(_LineComplete):
    name = "bash"

    def complete(self) -> str:
        items, incomplete = self.values()
        # bash replaces only the text after the last word break (`=`, `:`): send that part.
        breaks = os.environ.get("COMP_WORDBREAKS", _BASH_WORDBREAKS).strip(" \t\n")
        cut = max((incomplete.rfind(char) for char in breaks), default=-1) + 1
        return "\n".join(str(item.value)[cut:] for item in items)


class ZshComplete(_LineComplete):
    name = "zsh"


class FishComplete(_LineComplete):
    name = "fish"

    def format_completion(self, item: CompletionItem) -> str:
        return f"{item.value}\t{item.help}" if item.help else str(item.value)


def register() -> None:
    """Make `_CATDOG_COMPLETE=complete_SHELL` use these classes (call before the app runs)."""
    for cls in (BashComplete, ZshComplete, FishComplete):
        add_completion_class(cls, cls.name)


# --- what to offer ----------------------------------------------------------------------------


@functools.cache
def _keys() -> dict[str, dict[str, Any]]:
    """{key: {meaning, choices, default}}, cached on disk: building it imports the schema, and
    the schema imports torch, seconds a shell should not wait at every Tab."""
    sources = [
        Path(__file__).with_name("config.py"),
        *Path(__file__).with_name("optim").glob("*.py"),
    ]
    stamp = max(source.stat().st_mtime_ns for source in sources)
    cache = _cache_dir() / f"completion-keys-{stamp}.json"
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    from catdog.schema_docs import flow, schema_keys

    keys = {
        key.name: {
            "meaning": key.meaning,
            "choices": list(key.choices),
            "default": flow(key.default),
        }
        for key in schema_keys()
    }
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        temporary = cache.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(keys))
        temporary.replace(cache)
    except OSError:
        pass  # a read-only home: complete without a cache
    return keys


def _cache_dir() -> Path:
    if os.environ.get("CATDOG_CACHE_DIR"):
        return Path(os.environ["CATDOG_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "catdog"


def complete_set(incomplete: str) -> list[tuple[str, str]]:
    """`--set` candidates: the next level of a dotted key, or a key's allowed values."""
    keys = _keys()
    name, equals, value = incomplete.partition("=")
    if equals:
        key = keys.get(name)
        if key is None:
            return []
        choices = key["choices"] or [key["default"]]
        return [(f"{name}={c}", key["meaning"]) for c in choices if c.startswith(value)]
    offered: dict[str, str] = {}
    for key_name, key in keys.items():
        if not key_name.startswith(incomplete):
            continue
        dot = key_name.find(".", len(incomplete))
        candidate = key_name[: dot + 1] if dot >= 0 else f"{key_name}="
        offered.setdefault(candidate, "" if dot >= 0 else key["meaning"])
    return list(offered.items())


def complete_config(incomplete: str) -> list[str]:
    """`--config` candidates: shipped config names, then YAML files and folders."""
    from catdog.shipped import shipped_configs

    names = [c.name for c in shipped_configs() if c.name.startswith(incomplete)]
    return [*names, *complete_path(incomplete, suffixes=(".yaml", ".yml"))]


def complete_path(incomplete: str, suffixes: tuple[str, ...] = ()) -> list[str]:
    """Folders (with a trailing /) and files (of `suffixes`, if given) starting `incomplete`."""
    folder, _, stem = incomplete.rpartition("/")
    base = Path(os.path.expanduser(folder) if folder else ".")
    if folder == "" and incomplete.startswith("/"):
        base = Path("/")
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return []
    prefix = f"{folder}/" if folder or incomplete.startswith("/") else ""
    found = []
    for entry in entries:
        if not entry.name.startswith(stem) or (entry.name.startswith(".") and not stem):
            continue
        if entry.is_dir():
            found.append(f"{prefix}{entry.name}/")
        elif not suffixes or entry.suffix in suffixes:
            found.append(f"{prefix}{entry.name}")
    return found
