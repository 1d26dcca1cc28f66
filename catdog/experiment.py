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
    return fresh_folder(parent, label, "output.dir")


def fresh_folder(parent: Path, label: str, key: str) -> Path:
    """Make and return `parent/<label>-<time>` (with a counter if taken); never an existing one.

    `key` names the setting that chose `parent`, for the error message.
    """
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        folder = parent / (f"{label}-{stamp}" if attempt == 1 else f"{label}-{stamp}-{attempt}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise ConfigError(f"{key}: could not make a new folder in {parent}")


def run(config: Config, label: str, data: PreparedData | None = None) -> Summary:
    # Under torchrun rank 0 makes the one folder and every rank trains into it.
    run_dir = distributed.on_main(lambda: new_run_dir(config, label))
    try:
        return train(config, run_dir, data=data)
    except BaseException:
        # A run that stopped before writing anything (no photos at data.root, say) leaves no
        # empty folder behind to block the retry under the same output.name.
        if distributed.is_main() and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
