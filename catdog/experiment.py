"""Runs: a fresh folder per run (never overwriting one), then training into it."""

import time
from pathlib import Path

from catdog import distributed
from catdog.config import Config, ConfigError
from catdog.train import PreparedData, Summary, train


def new_run_dir(config: Config, label: str) -> Path:
    """`output.dir/output.name`, or `output.dir/<label>-<time>`; an existing folder is an error."""
    parent = Path(config.output.dir)
    parent.mkdir(parents=True, exist_ok=True)
    if config.output.name:
        run_dir = parent / config.output.name
        try:
            run_dir.mkdir()
        except FileExistsError:
            raise ConfigError(
                f"output.name: run folder {run_dir} already exists; choose another name, "
                f"or continue it with: catdog train --resume {run_dir}"
            ) from None
        return run_dir
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        run_dir = parent / (f"{label}-{stamp}" if attempt == 1 else f"{label}-{stamp}-{attempt}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise ConfigError(f"output.dir: could not make a new run folder in {parent}")


def run(config: Config, label: str, data: PreparedData | None = None) -> Summary:
    # Under torchrun rank 0 makes the one folder and every rank trains into it.
    run_dir = distributed.on_main(lambda: new_run_dir(config, label))
    return train(config, run_dir, data=data)
