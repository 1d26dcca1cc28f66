"""Lab notebook: one recipe, trained over several seeds through the product.

A recipe is a config file plus `--set` overrides, exactly as `catdog train` takes them. For each
seed S this runs what

    catdog train --config CONFIG --set ... --set seed=S \
        --set output.dir=OUT --set output.name=TAG-sS --set train.progress=false
    catdog evaluate OUT/TAG-sS --json          # and with --tta [--tta-shift N], if asked
    catdog evaluate OUT/TAG-sS --json --data JUDGE    # with --judge: photos no run saw

run (`catdog.config.load_config`, `catdog.experiment.run`, `catdog.evaluate.evaluate`), so every
figure is a catdog figure by construction. It prints one line per seed and appends one JSON line
per recipe to `--results`: per seed the last epoch's validation accuracy (metrics.csv), the best
epoch, best.pt's accuracy (the checkpoint `catdog evaluate` reads; chosen on the same split, so
optimistic) and the training seconds; then their means and sample standard deviations. The seed
draws the validation split too, so seeds differ in split as well as in initialisation and batches
(docs/accuracy.md's product tables were measured this way). A recipe that refits on every photo
(data.val_fraction 0) has no split to score: give it --judge, a photo folder set aside with
scripts/holdout.py, which scores best.pt without views (judge) and with the run's eval views
(judge_views).

    python scripts/accuracy_research.py --tag nobn --config configs/default.yaml \\
        --set model.batch_norm=false --seeds 0 1 2 --out /tmp/research --results research.jsonl

Many recipes at once: scripts/accuracy_sweep.py.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from catdog.config import load_config
from catdog.errors import CheckpointError, ConfigError, DataError, Diverged
from catdog.evaluate import evaluate
from catdog.experiment import run

# Each figure a seed can have, as the lines print it.
NAMES = {
    "last": "last",
    "best_pt": "best.pt",
    "best_pt_tta": "best.pt with views",
    "judge": "judge",
    "judge_views": "judge with views",
}


def train_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Train and evaluate the recipe with `seed`; the run's figures."""
    folder = f"{args.tag}-s{seed}"
    overrides = [
        *args.set,
        f"seed={seed}",
        f"output.dir={args.out}",
        f"output.name={folder}",
        "train.progress=false",
    ]
    config = load_config(args.config, overrides)
    summary = run(config, label=args.tag)
    row: dict[str, Any] = {
        "seed": seed,
        "run": str(summary.run_dir),
        "epochs": summary.epochs,
        "best_epoch": summary.best_epoch,
        "train_seconds": round(summary.seconds, 1),
    }
    if config.data.val_fraction > 0:
        best_pt, _ = evaluate(summary.run_dir, tta=False, tta_shift=0, progress=False)
        row["last"] = round(summary.final["val_accuracy"], 4)
        row["best_pt"] = round(best_pt.accuracy, 4)
        if args.tta:
            viewed, _ = evaluate(
                summary.run_dir, tta=True, tta_shift=args.tta_shift, progress=False
            )
            row["best_pt_tta"] = round(viewed.accuracy, 4)
    if args.judge is not None:
        judged, _ = evaluate(summary.run_dir, args.judge, tta=False, tta_shift=0, progress=False)
        row["judge"] = round(judged.accuracy, 4)
        viewed, _ = evaluate(summary.run_dir, args.judge, progress=False)  # the run's eval views
        row["judge_views"] = round(viewed.accuracy, 4)
    return row


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), deviation


def summarise(args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "tag": args.tag,
        "config": str(args.config) if args.config else None,
        "set": args.set,
        "seeds": [row["seed"] for row in rows],
        "runs": rows,
    }
    for key in ("last", "best_pt", "best_pt_tta", "judge", "judge_views"):
        if rows and key in rows[0]:
            mean, deviation = spread([row[key] for row in rows])
            result[f"{key}_mean"], result[f"{key}_std"] = round(mean, 4), round(deviation, 4)
    result["train_seconds"] = [row["train_seconds"] for row in rows]
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tag", default="run", help="names the runs' folders: TAG-sSEED")
    parser.add_argument("--config", "-c", type=Path, help="YAML config (default: the defaults)")
    parser.add_argument(
        "--set", "-s", action="append", default=[], help="override, as catdog train --set"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=Path("research"), help="parent of the runs")
    parser.add_argument("--tta", action="store_true", help="also evaluate with mirror averaging")
    parser.add_argument(
        "--tta-shift", type=int, default=0, metavar="N", help="--tta: with shifts of up to N px"
    )
    parser.add_argument(
        "--judge", type=Path, metavar="DIR", help="also score best.pt on these photos (holdout.py)"
    )
    parser.add_argument("--results", type=Path, help="append the recipe's JSON line here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.judge is not None and not args.judge.is_dir():
        print(f"error: --judge {args.judge}: no such folder", file=sys.stderr)
        return 2
    rows = []
    for seed in args.seeds:
        try:
            row = train_seed(args, seed)
        except (ConfigError, DataError, CheckpointError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except Diverged as error:
            print(f"{args.tag} seed {seed}: diverged: {error}", file=sys.stderr)
            return 3
        rows.append(row)
        figures = [f"{NAMES[key]} {row[key]:.2%}" for key in NAMES if key in row]
        print(
            f"{args.tag} seed {seed}: {', '.join(figures)}, best epoch {row['best_epoch']}, "
            f"{row['train_seconds']:.0f} s training",
            flush=True,
        )
    result = summarise(args, rows)
    line = json.dumps(result)
    if args.results is not None:
        with args.results.open("a") as file:
            file.write(line + "\n")
    spreads = [
        f"{NAMES[key]} {100 * result[f'{key}_mean']:.2f} ± {100 * result[f'{key}_std']:.2f}"
        for key in NAMES
        if f"{key}_mean" in result
    ]
    print(f"{args.tag}: {', '.join(spreads)} over seeds {result['seeds']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
