"""Hyperparameter validation shared by the optimizers: one clear `ValueError` per bad value."""

import math
import numbers


def check_number(label: str, value: object, low: float, high: float | None = None) -> None:
    """Require a finite real `value` with `low <= value`, and `value < high` when `high` is given.

    The message names the value and the allowed range, e.g.
    "Invalid beta value: 1.5 (must be in [0, 1))".
    """
    allowed = f"in [{low:g}, {high:g})" if high is not None else f">= {low:g}"
    is_real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if (
        not is_real
        or not math.isfinite(value)
        or value < low
        or (high is not None and value >= high)
    ):
        raise ValueError(f"Invalid {label}: {value!r} (must be {allowed})")


def check_choice(label: str, value: object, choices: tuple[object, ...]) -> None:
    """Require `value` to be one of `choices` (compared by equality and type, so 1 is not True)."""
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        allowed = " or ".join(repr(choice) for choice in choices)
        raise ValueError(f"Invalid {label}: {value!r} (must be {allowed})")
