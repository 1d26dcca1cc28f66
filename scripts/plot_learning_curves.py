"""Plot several runs' learning curves into one PNG, as `catdog compare` draws its runs.

Usage: python scripts/plot_learning_curves.py OUT.png RUN_DIR [RUN_DIR ...]

Each run's metrics.csv is read with catdog's own reader and drawn with catdog's comparison
figure (`catdog.plots.plot_comparison`): loss per epoch and per training second (validation
solid, training dashed) and validation accuracy per epoch, one colour per run, labelled by its
folder name.
"""

import sys
from pathlib import Path

from catdog.plots import Curve, plot_comparison
from catdog.runs import METRICS, read_metrics


def main(out: Path, runs: list[Path]) -> int:
    missing = [run for run in runs if not (run / METRICS).is_file()]
    if not runs or missing:
        where = ", ".join(str(run / METRICS) for run in missing) or "no run folders given"
        print(f"error: {where}: expected RUN_DIR/{METRICS} for every run", file=sys.stderr)
        return 2
    curves = [Curve(run.name, read_metrics(run / METRICS)) for run in runs]
    plot_comparison(curves, out, title=out.stem)
    print(out)
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]))
