"""What a tune leaves behind: trials.csv, best.yaml, and the best trial on the holdout rows."""

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from catdog.search_space import Dimension, apply

if TYPE_CHECKING:
    from catdog.tune import TrialRecord


def write_trials(
    records: "Sequence[TrialRecord]", dimensions: Sequence[Dimension], path: Path
) -> None:
    """One row per trial: number, state, objective, epochs, seconds, each searched value."""
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["number", "state", "value", "epochs", "seconds", "note",
                         *(d.key for d in dimensions), "run_dir"])  # fmt: skip
        for r in records:
            values = [
                json.dumps(d.value_of(r.params)) if d.key in r.params else "" for d in dimensions
            ]
            value = "" if r.value is None else repr(r.value)
            writer.writerow(
                [r.number, r.state, value, r.epochs, f"{r.seconds:.3f}", r.note, *values, r.run_dir]
            )


def write_best(
    base: dict[str, Any], dimensions: Sequence[Dimension], params: dict[str, Any], path: Path
) -> None:
    """The tuned config: the base config with the best trial's values, for `train --config`."""
    data = json.loads(json.dumps(base))
    apply(data, dimensions, {d.key: d.value_of(params) for d in dimensions})
    data.pop("output", None)  # a trial's folder; the new run makes its own
    tuned = ", ".join(f"{d.key}={json.dumps(d.value_of(params))}" for d in dimensions)
    path.write_text(f"# tuned by catdog tune: {tuned}\n" + yaml.safe_dump(data, sort_keys=False))


def holdout_measure(run_dir: Path, holdout: float) -> dict[str, float]:
    """The best trial's best.pt on the holdout rows: accuracy, loss and their count."""
    from catdog.builders import prepare_data
    from catdog.data import stratified_split
    from catdog.evaluate import restore
    from catdog.losses import LOSSES
    from catdog.metrics import measure

    trained = restore(run_dir / "best.pt")
    config = trained.config
    data = prepare_data(config, progress=False)
    val = data.val_indices
    _, held = stratified_split(data.images.labels[val], holdout, config.seed)
    result = measure(
        trained.model, data.images.pixels, data.images.labels, val[held], trained.mean,
        trained.std, LOSSES[config.loss], trained.device, batch_size=config.eval.batch_size,
    )  # fmt: skip
    return {"accuracy": result.accuracy, "loss": result.loss, "count": result.count}
