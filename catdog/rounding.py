"""Numbers written for people and tools (metrics.csv, `--json`) rounded to what they mean.

An accuracy is a share of at most a few thousand photos: 4 decimals (0.01 percentage points).
Losses, learning rates and other measured floats keep 6 significant figures, which is what
float32 arithmetic makes of them anyway; seconds keep milliseconds.
"""

import math
from typing import Any

ACCURACY_DECIMALS = 4
SIGNIFICANT = 6


def rounded(name: str, value: Any) -> Any:
    """`value` of the field `name`, rounded by what the name says it is (non-floats unchanged)."""
    if isinstance(value, dict):
        return {key: rounded(key, item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(name, item) for item in value]
    if not isinstance(value, float) or not math.isfinite(value):
        return value
    if "accuracy" in name:
        return round(value, ACCURACY_DECIMALS)
    if name in ("seconds", "elapsed") or name.endswith("_seconds"):
        return round(value, 3)
    return float(f"{value:.{SIGNIFICANT}g}")


def rounded_row(row: dict[str, Any]) -> dict[str, Any]:
    return {key: rounded(key, value) for key, value in row.items()}
