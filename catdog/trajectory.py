"""A run's weights every N steps, recorded into its folder, and read back for `catdog landscape`.

Three files in the run folder:

- `trajectory-start.pt`: θ₀, the weights when recording began, in float32, with the
  parameters' names and shapes and the step it was taken at;
- `trajectory.f16`: one row per recorded step, θ_t − θ₀ in float16, raw and appended (P
  weights → 2P bytes a row);
- `trajectory.steps`: the global step of each row, one a line.

Rows hold the distance travelled, not the weights: float16 keeps 11 significant bits, so
weights of size 0.05 stored as such would lose any move under ~2·10⁻⁵; the moves themselves
keep 3 significant digits whatever their size. Row 0 is θ₀ itself (zeros), and `close` adds
the final weights, so the first and last rows are the run's first and last weights.

The training loop opens a `Trajectory` (which continues the record after a resume, dropping
rows written after the checkpoint it resumes from) and keeps it among its observers: it is
called after every step and closed when the run ends, finished or not; under DDP only rank 0
records. The record is capped at `MAX_BYTES`:
a plan that would pass it is refused before training starts, and a resumed run that reaches
it stops recording (keeping room for the final row) and says so.
"""

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector

from catdog.errors import ConfigError

START = "trajectory-start.pt"
ROWS = "trajectory.f16"
STEPS = "trajectory.steps"
MAX_BYTES = 1 << 30
"""1 GiB a run: 330 rows of the article's 1.6M-weight network."""


def _say(message: str) -> None:
    from tqdm import tqdm  # writes above an open progress bar instead of through it

    tqdm.write(message, file=sys.stderr)


def flat_weights(model: nn.Module) -> Tensor:
    """All of `model`'s parameters as one float32 vector on the CPU, in `parameters()` order."""
    return parameters_to_vector(model.parameters()).detach().to("cpu", torch.float32)


def _size(count: float) -> str:
    """A byte count people read at a glance: 12 bytes, 3.1 MiB, 1.0 GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{count:,.0f} bytes"


class Trajectory:
    """The recorder the training loop drives (an `catdog.observers.Observer`): see the module
    docstring. Outside the loop: `open`, then `record(step)` after every step, then `close()`."""

    def __init__(
        self,
        run_dir: Path,
        every: int,
        model: nn.Module,
        start: Tensor,
        step: int,
        last_step: int | None,
        rows: int,
        max_bytes: int,
        say: Callable[[str], None],
    ) -> None:
        self.run_dir = run_dir
        self.every = every
        self.model = model
        self.start = start
        self.step = step
        """The last global step seen."""
        self.last_step = last_step
        """The step of the last row written (None before any)."""
        self.rows = rows
        self.row_bytes = 2 * len(start)
        self.max_rows = max_bytes // self.row_bytes
        self.say = say
        self.full = False
        self._rows_file = (run_dir / ROWS).open("ab")
        self._steps_file = (run_dir / STEPS).open("a")

    @classmethod
    def open(
        cls,
        run_dir: Path,
        every: int,
        model: nn.Module,
        step: int = 0,
        total_steps: int | None = None,
        max_bytes: int = MAX_BYTES,
        say: Callable[[str], None] = _say,
    ) -> "Trajectory":
        """Start a record of `model`'s weights at global `step`, or continue the one in `run_dir`.

        `total_steps` (the run's planned steps) lets a record that would pass `max_bytes` be
        refused now, with the smallest `every` that fits, instead of cut short later.
        """
        if every < 1:
            raise ConfigError(f"train.trajectory: {every}: record every N >= 1 steps, or null")
        weights = flat_weights(model)
        row_bytes = 2 * len(weights)
        max_rows = max_bytes // row_bytes
        if total_steps is not None:
            planned = total_steps // every + 2  # θ₀, every N-th step, the final weights
            if planned > max_rows:
                fits = math.ceil(total_steps / max(max_rows - 2, 1))
                raise ConfigError(
                    f"train.trajectory: every {every} steps of {total_steps:,} records "
                    f"{planned:,} rows of {_size(row_bytes)}, {_size(planned * row_bytes)}, over "
                    f"the {_size(max_bytes)} cap; record every {fits} steps or more"
                )
        if (run_dir / START).is_file():
            start, rows, last = _continue(run_dir, weights, step)
            say(f"trajectory: continuing {run_dir / ROWS} after step {step} ({rows} rows kept)")
            return cls(run_dir, every, model, start, step, last, rows, max_bytes, say)
        (run_dir / ROWS).unlink(missing_ok=True)
        (run_dir / STEPS).unlink(missing_ok=True)
        names = [name for name, _ in model.named_parameters()]
        shapes = [list(p.shape) for p in model.parameters()]
        meta = {"names": names, "shapes": shapes, "step": step, "every": every}
        torch.save({"start": weights, **meta}, run_dir / START)
        recorder = cls(run_dir, every, model, weights, step, None, 0, max_bytes, say)
        planned = f"; {total_steps // every + 2} rows planned" if total_steps else ""
        say(
            f"trajectory: {len(weights):,} weights every {every} steps as float16, "
            f"{_size(row_bytes)} a row{planned}, cap {_size(max_bytes)}, in {run_dir / ROWS}"
        )
        recorder._record(step, weights)
        return recorder

    def record(self, step: int) -> None:
        """After global step `step`: a row if `step` is a multiple of `every`."""
        self.step = step
        if step % self.every == 0 and step != self.last_step:
            self._record(step, flat_weights(self.model))

    def after_step(self, run: Any, loss: float, lr: float) -> None:
        """The loop's call after each step; `run` is a `catdog.train.Run`."""
        self.record(run.progress.epoch * len(run.batches) + run.progress.step)

    def after_epoch(self, run: Any, row: dict[str, float]) -> None:
        """Nothing: the rows follow the steps, not the epochs."""

    def close(self) -> None:
        """Record the final weights (unless this step already is, or they are not finite, as
        after a divergence), and say how big the record got. Closing twice does nothing."""
        if self._rows_file.closed:
            return
        weights = flat_weights(self.model)
        if self.step != self.last_step and bool(torch.isfinite(weights).all()):
            self._record(self.step, weights, final=True)
        self._rows_file.close()
        self._steps_file.close()
        self.say(f"trajectory: {self.rows} rows, {_size(self.rows * self.row_bytes)}")

    def _record(self, step: int, weights: Tensor, final: bool = False) -> None:
        if self.rows >= self.max_rows - (0 if final else 1):  # one row stays for the final
            if not self.full:
                self.say(
                    f"trajectory: the {_size(self.max_rows * self.row_bytes)} cap is reached at "
                    f"step {step}; no more rows but the final weights"
                )
                self.full = True
            return
        row = (weights - self.start).to(torch.float16).numpy()
        self._rows_file.write(row.tobytes())
        self._rows_file.flush()
        self._steps_file.write(f"{step}\n")
        self._steps_file.flush()
        self.rows += 1
        self.last_step = step


def _continue(run_dir: Path, weights: Tensor, step: int) -> tuple[Tensor, int, int | None]:
    """(θ₀, rows kept, their last step) of the record in `run_dir`, cut back to `step`."""
    recorded = read_trajectory(run_dir)
    start, steps = recorded.start, recorded.steps
    del recorded  # its memory map must go before the file shrinks under it
    if len(start) != len(weights):
        raise ConfigError(
            f"{run_dir / START}: records {len(start):,} weights, the network has "
            f"{len(weights):,}; move the trajectory files away to record a new one"
        )
    keep = int(np.searchsorted(steps, step, side="right"))
    with (run_dir / ROWS).open("r+b") as file:
        file.truncate(keep * 2 * len(weights))
    (run_dir / STEPS).write_text("".join(f"{s}\n" for s in steps[:keep]))
    return start, keep, int(steps[keep - 1]) if keep else None


@dataclass
class Recorded:
    """A trajectory read back: row r is the weights after step `steps[r]`."""

    folder: Path
    start: Tensor
    """θ₀, float32 (P,)."""
    steps: np.ndarray
    deltas: np.ndarray
    """θ_t − θ₀ per row, float16 (rows, P), a memory map of the file."""
    names: list[str]
    shapes: list[list[int]]
    every: int

    def __len__(self) -> int:
        return len(self.steps)

    def weights(self, row: int) -> Tensor:
        """The weights of row `row` (negative counts from the end), float32 (P,)."""
        return self.start + torch.from_numpy(np.asarray(self.deltas[row], dtype=np.float32))

    @property
    def size_bytes(self) -> int:
        return int(self.deltas.nbytes)


def read_trajectory(run_dir: Path) -> Recorded:
    """The trajectory recorded in `run_dir`; a run that recorded none is a one-line error.

    A run killed between writing a row and its step keeps the rows both files agree on.
    """
    start_path = run_dir / START
    if not start_path.is_file() or not (run_dir / ROWS).is_file():
        raise ConfigError(
            f"{run_dir}: recorded no trajectory (no {START}); train it with "
            "--set train.trajectory=N to record the weights every N steps"
        )
    try:
        meta: dict[str, Any] = torch.load(start_path, weights_only=True)
        start = meta["start"].to(torch.float32)
    except Exception as error:  # a file torch can't read has many ways to fail
        raise ConfigError(f"{start_path}: not a readable trajectory ({error})") from None
    steps_path = run_dir / STEPS
    lines = steps_path.read_text().split() if steps_path.is_file() else []
    row_bytes = 2 * len(start)
    rows = min(len(lines), os.path.getsize(run_dir / ROWS) // row_bytes)
    steps = np.array([int(line) for line in lines[:rows]], dtype=np.int64)
    if rows == 0:
        deltas = np.zeros((0, len(start)), dtype=np.float16)
    else:
        deltas = np.memmap(run_dir / ROWS, dtype=np.float16, mode="r", shape=(rows, len(start)))
    return Recorded(
        run_dir, start, steps, deltas, meta["names"], meta["shapes"], int(meta["every"])
    )
