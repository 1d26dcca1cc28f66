"""Runs: a fresh folder per run (never overwriting one), then training into it."""

from catdog import distributed
from catdog.builders import PreparedData
from catdog.config import Config
from catdog.paths import absolute_paths
from catdog.runs import new_run_dir
from catdog.train import Summary, train


def run(config: Config, label: str, data: PreparedData | None = None) -> Summary:
    """Train `config` into a new run folder named by `output.name`, or by `label` and the time."""
    config = absolute_paths(config)  # the run folder then works from any folder
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
