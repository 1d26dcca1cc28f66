"""Hyperparameter validation shared by the optimizers: one clear `ValueError` per bad value.

Every message reads "Invalid <label>: <value> (must be <what is allowed>)".
"""

import math
import numbers


def check_number(
    label: str,
    value: object,
    low: float,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_closed: bool = False,
) -> None:
    """Require a finite real `value` in [low, high) (or >= low when `high` is None).

    `low_open` makes the interval open at `low`, `high_closed` closed at `high`, e.g.
    "Invalid beta value: 1.5 (must be in [0, 1))" or "Invalid mutation_rate: 0 (must be in (0, 1])".
    """
    if high is None:
        allowed = f"> {low:g}" if low_open else f">= {low:g}"
    else:
        allowed = f"in {'(' if low_open else '['}{low:g}, {high:g}{']' if high_closed else ')'}"
    is_real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if (
        not is_real
        or not math.isfinite(value)
        or value < low
        or (low_open and value == low)
        or (high is not None and (value > high or (value == high and not high_closed)))
    ):
        raise ValueError(f"Invalid {label}: {value!r} (must be {allowed})")


def check_integer(label: str, value: object, low: int, high: int | None = None) -> None:
    """Require an int (not a bool, not 8.0) with low <= value (<= high when given)."""
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not is_int or value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"Invalid {label}: {value!r} (must be an integer {allowed})")


def check_choice(label: str, value: object, choices: tuple[object, ...]) -> None:
    """Require `value` to be one of `choices` (compared by equality and type, so 1 is not True)."""
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        allowed = " or ".join(repr(choice) for choice in choices)
        raise ValueError(f"Invalid {label}: {value!r} (must be {allowed})")
