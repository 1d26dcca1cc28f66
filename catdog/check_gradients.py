"""`catdog gradcheck`: backprop against finite differences on a small copy of a config's network.

The config gives the loss (`mse`/`bce`) and the hidden layers, each capped at `MAX_WIDTH` units:
finite differences cost two forward passes per weight, so the check runs on a network with the
same shape of computation, not the full one. Inputs are random `IMAGE_SIZE`² photos with the
config's channels; everything is float64 (see `catdog.gradcheck` for the error measures).
"""

from pathlib import Path

from catdog.config import Config, load_config
from catdog.gradcheck import LayerCheck, gradcheck, small_problem
from catdog.losses import LOSSES

MAX_WIDTH = 8
IMAGE_SIZE = 6
BATCH = 16


def check_gradients(
    config_path: Path | None, tolerance: float, seed: int = 0
) -> tuple[list[str], bool]:
    """The report's lines, and whether every layer's max relative error is within `tolerance`."""
    config = load_config(config_path) if config_path is not None else Config()
    hidden = tuple(min(width, MAX_WIDTH) for width in config.model.hidden)
    channels = 1 if config.data.grayscale else 3
    model, inputs, targets = small_problem(
        seed, image_size=IMAGE_SIZE, channels=channels, hidden=hidden, batch=BATCH
    )
    checks = gradcheck(model, inputs, targets, LOSSES[config.loss])
    widths = " → ".join(str(w) for w in (channels * IMAGE_SIZE**2, *hidden, 1))
    lines = [
        f"gradcheck: network {widths}, {config.loss} loss, {BATCH} random "
        f"{IMAGE_SIZE}x{IMAGE_SIZE} photos, float64, central differences",
        *table(checks),
    ]
    worst = max(checks, key=lambda check: check.max_rel_error)
    error = worst.max_rel_error
    # `not error <= tolerance` also fails a NaN error.
    passed = error <= tolerance
    verdict = "passed" if passed else "FAILED"
    relation = "<=" if passed else ">"
    lines.append(
        f"{verdict}: largest relative error {error:.2e} ({worst.name}) {relation} "
        f"tolerance {tolerance:g}"
    )
    return lines, passed


def table(checks: list[LayerCheck]) -> list[str]:
    """One aligned line per layer: its size, errors and the time each method took."""
    name_width = max(len("layer"), *(len(check.name) for check in checks))
    header = (
        f"{'layer':<{name_width}}  {'weights':>7}  {'max abs error':>13}  {'max rel error':>13}"
        f"  {'backprop':>10}  {'finite diff':>11}"
    )
    lines = [header]
    for check in checks:
        lines.append(
            f"{check.name:<{name_width}}  {check.count:>7}  {check.max_abs_error:>13.2e}"
            f"  {check.max_rel_error:>13.2e}  {check.backprop_seconds * 1e3:>7.2f} ms"
            f"  {check.finite_difference_seconds * 1e3:>8.1f} ms"
        )
    return lines
