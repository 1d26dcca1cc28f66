"""How a run stops early: a signal honoured after the current step, or a loss gone NaN.

Each ends in one error line that says what was kept and what to do next (`catdog.errors`).
"""

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from catdog import runs
from catdog.errors import Diverged, Interrupted
from catdog.paths import command


@contextmanager
def stop_on_signals() -> Iterator[dict[str, int]]:
    """Turn Ctrl-C and SIGTERM into a request the loop honours after the current step."""
    request: dict[str, int] = {}

    def handler(signum: int, _frame: Any) -> None:
        request.setdefault("signal", signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def draw_curves(run_dir: Path, epochs: int) -> None:
    """curves.png. A signal meanwhile skips it, saying that the run itself is complete."""
    try:
        runs.draw_curves(run_dir)
    except (KeyboardInterrupt, SystemExit) as stop:
        code = 128 + signal.SIGINT if isinstance(stop, KeyboardInterrupt) else stop.code
        if not isinstance(code, int) or code <= 128:
            raise  # not a signal
        (run_dir / runs.CURVES).unlink(missing_ok=True)  # half drawn, if at all
        raise complete_but_curves(
            code - 128, f"while drawing {runs.CURVES}", run_dir, epochs
        ) from None


def complete_but_curves(signum: int, when: str, run_dir: Path, epochs: int) -> Interrupted:
    """The error for a signal `when` the run had already saved its last epoch."""
    return Interrupted(
        f"{signal.Signals(signum).name} {when}: the run is complete ({epochs} epochs; "
        f"metrics.csv, {runs.LAST} and {runs.BEST} are kept in {run_dir}); "
        f"only {runs.CURVES} is missing",
        exit_code=128 + signum,
    )


def diverged(
    run_dir: Path, epochs_done: int, step: int, batch_loss: float, lr: float, base_lr: float
) -> Diverged:
    """The error for a NaN or infinite loss at batch `step + 1` of epoch `epochs_done + 1`."""
    kept = (
        f"Metrics so far are in {run_dir / runs.METRICS}, "
        f"the last good checkpoint is {run_dir / runs.LAST}"
        if epochs_done
        else "Nothing was saved: it diverged in the first epoch"
    )
    return Diverged(
        f"loss became {batch_loss} at epoch {epochs_done + 1}, batch {step + 1} "
        f"with optimizer.lr={lr:g}: the steps are too large; try a smaller lr "
        f"(e.g. --set optimizer.lr={base_lr / 10:g}). {kept}"
    )


def interrupted(signum: int, run_dir: Path, epochs_done: int, step: int) -> Interrupted:
    """The error for a signal honoured after batch `step` of epoch `epochs_done + 1`."""
    return Interrupted(
        f"{signal.Signals(signum).name}: stopped at epoch {epochs_done + 1}, batch "
        f"{step}; resume with: {command()} train --resume {run_dir}",
        exit_code=128 + signum,
    )
