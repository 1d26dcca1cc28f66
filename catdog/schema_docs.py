"""The config schema described from its own source: every key's type, default and meaning.

The meaning is the attribute docstring under each field in `catdog/config.py`, so `catdog config
keys`, the README's table and the shell completion of `--set` all read one source. `show` prints
a resolved config as YAML, marking each value that differs from its default.
"""

import ast
import inspect
import itertools
import re
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Any

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from catdog.config import Config, OptimizerConfig, config_dict, optimizer_parameters
from catdog.optim import OPTIMIZERS


@dataclass(frozen=True)
class Key:
    """One dotted config key."""

    name: str  # e.g. "optimizer.lr"
    type: str  # e.g. "float > 0", "channel | zca"
    default: Any
    meaning: str
    choices: tuple[str, ...] = ()  # the values completion offers: a Literal's, true/false


def schema_keys() -> list[Key]:
    """Every key of the schema, in the order `config.py` declares them, then the optimizers' own."""
    return [*_section_keys(Config, ""), *optimizer_keys()]


def optimizer_keys() -> list[Key]:
    """`optimizer.<hyperparameter>` for every hyperparameter some optimizer takes, besides lr."""
    takers: dict[str, list[str]] = {}
    for name in OPTIMIZERS:
        for parameter in optimizer_parameters(name):
            if parameter != "lr":
                takers.setdefault(parameter, []).append(name)
    keys = []
    for parameter, names in takers.items():
        signature = inspect.signature(OPTIMIZERS[names[0]].__init__).parameters[parameter]
        default = None if signature.default is inspect.Parameter.empty else signature.default
        choices = _hyperparameter_choices(names[0], parameter, default)
        kind = " | ".join(choices) if choices and not isinstance(default, bool) else None
        keys.append(
            Key(
                f"optimizer.{parameter}",
                kind or _type_name(type(default)) if default is not None else "any",
                default,
                f"{', '.join(names)}: the optimizer's own (default shown: {names[0]}'s)",
                choices,
            )
        )
    return keys


def keys_table(markdown: bool = False) -> str:
    """`catdog config keys`: one line per key (or a Markdown table for the README)."""
    keys = schema_keys()
    if markdown:
        rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
        rows += [
            f"| `{k.name}` | {_cell(k.type)} | `{flow(k.default)}` | {_cell(k.meaning)} |"
            for k in keys
        ]
        return "\n".join(rows)
    width = max(len(k.name) for k in keys)
    type_width = min(max(len(k.type) for k in keys), 24)
    return "\n".join(
        f"{k.name:<{width}}  {k.type:<{type_width}}  {flow(k.default):<12}  {k.meaning}".rstrip()
        for k in keys
    )


README_START = "<!-- config keys: `make config-docs` writes this table from the schema -->"
README_END = "<!-- end of config keys -->"


def readme_with_keys(readme: str) -> str:
    """The README's text with the table between its markers rewritten from the schema."""
    start, end = readme.index(README_START) + len(README_START), readme.index(README_END)
    return f"{readme[:start]}\n{keys_table(markdown=True)}\n{readme[end:]}"


def show(config: Config, source: str = "the defaults") -> str:
    """The resolved config as YAML; `# default: X` marks a value that differs from the default,
    and the optimizer's hyperparameters left at its own defaults appear as comments."""
    defaults = config_dict(Config())
    signature = inspect.signature(OPTIMIZERS[config.optimizer.name].__init__).parameters
    own = {p: signature[p].default for p in optimizer_parameters(config.optimizer.name)}
    # The optimizer's own hyperparameters differ from *its* defaults, or not.
    defaults["optimizer"].update(
        {p: list(v) if isinstance(v, tuple) else v for p, v in own.items() if v is not _EMPTY}
    )
    lines = [
        f"# resolved from {source}; '# default: X' marks what differs from the defaults",
    ]
    _emit(config_dict(config), defaults, 0, lines)
    given = set(config_dict(config)["optimizer"])
    untold = [
        f"  # {p}: {flow(default)}  ({config.optimizer.name}'s default)"
        for p, default in own.items()
        if p not in given and default is not _EMPTY
    ]
    if untold:
        at = next(i for i, line in enumerate(lines) if line.startswith("optimizer:")) + 1
        while at < len(lines) and lines[at].startswith("  "):
            at += 1
        lines[at:at] = untold
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a Markdown table cell's own bar


def flow(value: Any) -> str:
    """A value as YAML writes it on one line: 0.01, null, [512, 128], true."""
    return yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()[1:-1]


def _emit(node: dict[str, Any], defaults: Any, depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    for key, value in node.items():
        default = defaults.get(key, _MISSING) if isinstance(defaults, dict) else _MISSING
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{key}:")
            _emit(value, default, depth + 1, lines)
            continue
        line = f"{pad}{key}: {flow(value)}"
        if default is _MISSING:
            line = f"{line:<40}  # set (no schema default)"
        elif default != value:
            line = f"{line:<40}  # default: {flow(default)}"
        lines.append(line)


_MISSING = object()
_EMPTY = inspect.Parameter.empty


# --- reading the schema -----------------------------------------------------------------------


def _section_keys(model: type[BaseModel], prefix: str) -> list[Key]:
    docs = attribute_docstrings(model)
    keys: list[Key] = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _section_keys(annotation, f"{dotted}.")
            continue
        if model is OptimizerConfig and name == "name":
            choices: tuple[str, ...] = tuple(OPTIMIZERS)
        else:
            choices = _choices(annotation)
        keys.append(
            Key(
                dotted,
                _type_name(annotation) + _bounds(field),
                field.get_default(call_default_factory=True),
                first_sentence(docs.get(name, "")),
                choices,
            )
        )
    return keys


def first_sentence(text: str) -> str:
    """A docstring's first sentence, on one line."""
    joined = " ".join(text.split())
    return re.split(r"(?<!\be\.g)(?<!\bi\.e)\.\s+(?=[A-Za-z0-9])", joined, maxsplit=1)[0]


def attribute_docstrings(model: type) -> dict[str, str]:
    """{field: docstring} from the string that follows each field in the class's source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(model)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for statement, following in itertools.pairwise(body):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(arguments[0])
    if origin is typing.Literal:
        return " | ".join(str(a) for a in arguments)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _type_name(a) for a in arguments)
    if origin is list:
        return f"list[{_type_name(arguments[0])}]"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field: FieldInfo) -> str:
    signs = {
        annotated_types.Ge: ("≥", "ge"),
        annotated_types.Gt: (">", "gt"),
        annotated_types.Le: ("≤", "le"),
        annotated_types.Lt: ("<", "lt"),
    }
    parts = []
    for constraint in field.metadata:
        for kind, (sign, attribute) in signs.items():
            if isinstance(constraint, kind):
                parts.append(f"{sign} {_number(getattr(constraint, attribute))}")
    return f" {', '.join(parts)}" if parts else ""


def _number(value: float) -> str:
    if isinstance(value, int) and value > 2**20 and value & (value - 1) == 0:
        return f"2^{value.bit_length() - 1}"  # the seed's bound: 2^63, not 9.22337e+18
    return f"{value:g}"


def _choices(annotation: Any) -> tuple[str, ...]:
    if annotation is bool:
        return ("true", "false")
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return tuple(str(a) for a in typing.get_args(annotation))
    choices: tuple[str, ...] = ()
    for argument in typing.get_args(annotation):
        if argument is type(None):
            choices += ("null",)
        elif typing.get_origin(argument) is typing.Literal:
            choices += tuple(str(a) for a in typing.get_args(argument))
    return choices if len(choices) > 1 or (choices and choices != ("null",)) else ()


def _hyperparameter_choices(optimizer: str, parameter: str, default: Any) -> tuple[str, ...]:
    """true/false for a flag; for a string, the module's tuple of them (FORMULATIONS for
    `formulation`, CROSSOVERS for `crossover`) or the values of its Literal annotation."""
    if isinstance(default, bool):
        return ("true", "false")
    cls = OPTIMIZERS[optimizer]
    module = inspect.getmodule(cls)
    listed = getattr(module, f"{parameter.upper()}S", None)
    if isinstance(listed, tuple | list | dict):
        return tuple(str(value) for value in listed)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation that needs names not importable here: no choices
        return ()
    return _choices(hints.get(parameter))
