"""Plot validation accuracy and losses per epoch from runs' metrics.csv into one small PNG.

Usage: python scripts/plot_learning_curves.py OUT.png RUN_DIR [RUN_DIR ...]
Each run is labelled by its folder name.
"""

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


def read_rows(run_dir: Path) -> list[dict[str, float]]:
    with (run_dir / "metrics.csv").open(newline="") as file:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(file)]


def main(out: Path, runs: list[Path]) -> None:
    figure, (accuracy, loss) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=80)
    for run_dir in runs:
        rows = read_rows(run_dir)
        epochs = [r["epoch"] for r in rows]
        line = accuracy.plot(epochs, [100 * r["val_accuracy"] for r in rows], lw=1)[0]
        loss.plot(epochs, [r["val_loss"] for r in rows], lw=1, color=line.get_color())
        loss.plot(epochs, [r["train_loss"] for r in rows], lw=1, ls="--", color=line.get_color())
        line.set_label(run_dir.name)
    accuracy.set(xlabel="epoch", ylabel="validation accuracy (%)", ylim=(55, 77))
    accuracy.axhline(72, color="grey", lw=0.8, ls=":")
    accuracy.legend(fontsize=7)
    loss.set(xlabel="epoch", ylabel="BCE loss (solid: validation, dashed: train)")
    figure.tight_layout()
    figure.savefig(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
