"""The configs shipped inside the package: list them, copy one out, and resolve `--config NAME`.

They live in `catdog/configs/` (package data, so an installed wheel has them; the repository's
`configs/` is a link to that folder). A config's description is its first comment line.
"""

import os
import re
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from catdog.errors import ConfigError
from catdog.paths import expand_path


@dataclass(frozen=True)
class ShippedConfig:
    name: str  # the file's stem: `--config sgd` means sgd.yaml
    path: Path
    description: str


def shipped_folder() -> Path:
    """The folder of shipped configs, inside the installed package."""
    return Path(str(resources.files("catdog") / "configs"))


def shipped_configs() -> list[ShippedConfig]:
    """Every shipped config, by name."""
    return [
        ShippedConfig(path.stem, path, _description(path))
        for path in sorted(shipped_folder().glob("*.yaml"), key=lambda path: path.stem)
    ]


def resolve_config(value: str | os.PathLike[str]) -> Path:
    """The file `--config VALUE` means: an existing path, else a shipped config's name.

    A path wins when both exist, so a local `sgd.yaml` is read before the shipped `sgd`.
    """
    path = Path(expand_path(value))
    if path.exists():
        return path
    by_name = {config.name: config.path for config in shipped_configs()}
    name = path.name.removesuffix(".yaml").removesuffix(".yml")
    if str(path.parent) in ("", ".", "configs") and name in by_name:
        return by_name[name]
    names = ", ".join(by_name)
    raise ConfigError(
        f"{value}: config file not found; pass an existing YAML file or a shipped config "
        f"({names}; `catdog configs` describes them)"
    )


def copy_config(name: str, destination: str | os.PathLike[str] | None = None) -> Path:
    """Copy shipped config `name` to `destination` (a file, or a folder: NAME.yaml in it;
    default: the current folder) to edit; an existing file is never overwritten."""
    by_name = {config.name: config.path for config in shipped_configs()}
    stem = name.removesuffix(".yaml")
    if stem not in by_name:
        raise ConfigError(
            f"{name}: no shipped config of that name; choose one of {', '.join(by_name)}"
        )
    target = Path(expand_path(destination)) if destination is not None else Path.cwd()
    if target.is_dir():
        target = target / f"{stem}.yaml"
    if target.exists():
        raise ConfigError(f"{target}: already exists; choose another destination or remove it")
    if not target.parent.is_dir():
        raise ConfigError(f"{target.parent}: no such folder; make it first or choose another")
    shutil.copyfile(by_name[stem], target)
    return target


def _description(path: Path) -> str:
    """The first sentence of the config's leading comment."""
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(lines)
    # A full stop then a capital ends a sentence; "Dogs vs. Cats" does not.
    return re.split(r"(?<!\bvs)\.\s+(?=[A-Za-z0-9])", text, maxsplit=1)[0].removesuffix(".") + "."
