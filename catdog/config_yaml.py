"""Reading a config's YAML: numbers as people write them, no aliases, no key given twice.

Every problem (a file too large, not UTF-8, broken YAML, not a mapping) is one `ConfigError`
line naming the file, or `--set KEY` for a command-line value, with the line and column.
"""

import re
from pathlib import Path
from typing import Any

import yaml

from catdog.errors import ConfigError, shorten

MAX_CONFIG_BYTES = 2**20  # a config is a few hundred bytes; anything this large is a mistake


class ConfigLoader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-3` as a string; people mean the number.

    Aliases (`*name`) are refused: a few hundred bytes of nested aliases ("billion laughs")
    expand to gigabytes, and a config has no need of them. A key given twice is refused too,
    where YAML would silently keep the last one.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"aliases (*{event.anchor}) are not allowed in a config; write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {shorten(repr(key))}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=ConfigLoader)
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: nested too deeply") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{source}:{where}: invalid YAML: {shorten(problem)}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    too_large = (
        f"{path}: too large for a config (more than {MAX_CONFIG_BYTES // 2**20} MiB); "
        "pass a YAML config file"
    )
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:  # refused unread; a pipe's size is 0
            raise ConfigError(too_large)
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)  # /dev/zero or a pipe: never more
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; pass an existing YAML file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file: {error.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(too_large)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}); "
            "save the config as UTF-8"
        ) from None
    data = parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a config must be a YAML mapping of sections, got {type(data).__name__}"
        )
    return data
