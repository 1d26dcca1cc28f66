"""What `catdog tune --space` searches: one dimension per config key.

    --space optimizer.lr=log:1e-5:1       a number drawn on a log scale in [1e-5, 1]
    --space optimizer.beta=0.8:0.99       a number drawn uniformly in [0.8, 0.99]
    --space train.batch_size=16:128       an integer (both ends are integers)
    --space model.hidden=[256],[512,128]  one of these values (read as one YAML flow list)

Each key is checked against the config before anything runs: its ends (or every choice) are
set in the config and validated, so `optimizer.lrr` or a momentum's `beta=2` is one line that
names the key, as `--set` would.
"""

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from catdog.config import apply_override, validate
from catdog.config_yaml import parse_yaml
from catdog.errors import ConfigError

EXAMPLE = "e.g. --space optimizer.lr=log:1e-5:1, --space optimizer.beta=0.8:0.99"
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^(log:)?({_NUMBER}):({_NUMBER})$")


@dataclass(frozen=True)
class Dimension:
    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] = ()

    @property
    def is_choice(self) -> bool:
        return bool(self.choices)

    def suggest(self, trial: optuna.Trial) -> Any:
        """This dimension's value for `trial`; choices travel as JSON (Optuna keeps scalars)."""
        if self.is_choice:
            return json.loads(trial.suggest_categorical(self.key, [_json(c) for c in self.choices]))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)  # type: ignore[arg-type]
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)  # type: ignore[arg-type]

    def value_of(self, params: dict[str, Any]) -> Any:
        """The config value from a trial's stored params."""
        value = params[self.key]
        return json.loads(value) if self.is_choice else value


def parse_space(options: Sequence[str], base: dict[str, Any]) -> list[Dimension]:
    """`KEY=SPEC` options → dimensions, each checked against the config `base` (plain data)."""
    if not options:
        raise ConfigError(f"--space: give at least one key to search, {EXAMPLE}")
    dimensions: list[Dimension] = []
    for option in options:
        key, sep, raw = option.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise ConfigError(f"--space {option!r}: expected KEY=SPEC, {EXAMPLE}")
        if key in (d.key for d in dimensions):
            raise ConfigError(f"--space {key}: given twice; give each key once")
        if key == "seed" or key.startswith("output."):
            raise ConfigError(f"--space {key}: not a setting to tune; search a hyperparameter")
        dimension = _parse_one(key, raw)
        for value in _corners(dimension):
            _check_value(base, key, value)
        dimensions.append(dimension)
    return dimensions


def _parse_one(key: str, raw: str) -> Dimension:
    where = f"--space {key}"
    match = _RANGE.match(raw)
    if match:
        log, low_text, high_text = match.groups()
        low, high = float(low_text), float(high_text)
        if low >= high:
            raise ConfigError(f"{where}={raw}: the low end {low:g} must be below the high end")
        if log and low <= 0:
            raise ConfigError(
                f"{where}={raw}: a log range must stay above 0 (got low end {low:g}); "
                f"e.g. {key}=log:1e-5:{high:g}"
            )
        integer = _is_integer(low_text) and _is_integer(high_text)
        return Dimension(key, low, high, log=bool(log), integer=integer)
    if raw.startswith("log:"):
        raise ConfigError(f"{where}={raw}: expected log:LOW:HIGH with two numbers, {EXAMPLE}")
    if not raw:
        raise ConfigError(f"{where}: empty choice list; give values, e.g. {key}=a,b or LOW:HIGH")
    choices = parse_yaml(f"[{raw}]", where)
    if not choices or any(choice is None for choice in choices):
        raise ConfigError(f"{where}={raw}: empty choice list; give values, e.g. {key}=a,b")
    if len({_json(c) for c in choices}) < len(choices):
        raise ConfigError(f"{where}={raw}: a choice is given twice")
    return Dimension(key, choices=tuple(choices))


def _corners(dimension: Dimension) -> list[Any]:
    if dimension.is_choice:
        return list(dimension.choices)
    ends = [dimension.low, dimension.high]
    return [int(v) for v in ends] if dimension.integer else ends  # type: ignore[arg-type]


def _check_value(base: dict[str, Any], key: str, value: Any) -> None:
    data = json.loads(json.dumps(base))
    apply_override(data, f"{key}={_json(value)}")
    try:
        validate(data, source=f"--space {key}={_json(value)}")
    except ConfigError as error:
        raise ConfigError(str(error)) from None


def apply(data: dict[str, Any], dimensions: Sequence[Dimension], values: dict[str, Any]) -> None:
    """Set each dimension's value in the config data (in place), as `--set` would."""
    for dimension in dimensions:
        apply_override(data, f"{dimension.key}={_json(values[dimension.key])}")


def _is_integer(text: str) -> bool:
    return re.fullmatch(r"[-+]?\d+", text) is not None


def _json(value: Any) -> str:
    return json.dumps(value)


def describe(dimension: Dimension) -> str:
    if dimension.is_choice:
        return " | ".join(_json(c) for c in dimension.choices)
    scale = "log " if dimension.log else ""
    kind = "integer" if dimension.integer else "number"
    return f"{scale}{kind} in [{dimension.low:g}, {dimension.high:g}]"
