"""Print a sweep's results (JSON lines of `accuracy_research.py`) as a markdown table.

    python scripts/sweep_table.py docs/sweeps/gpu-2.jsonl [--sort val|ens|finish]

val = the members' mean final validation accuracy ± their standard deviation (each member is
a seed); ens = accuracy of the members' averaged P(dog); +TTA = with mirror averaging.
"""

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--sort", choices=["val", "ens", "finish"], default="finish")
    args = parser.parse_args()
    rows = [json.loads(line) for path in args.results for line in path.read_text().splitlines()]
    if args.sort != "finish":
        rows.sort(key=lambda row: -row["val_mean" if args.sort == "val" else "ens"])
    print("| run | seeds | val (mean ± std) | +TTA | ens | ens +TTA | train acc | train s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['tag']} | {row['members']} "
            f"| {100 * row['val_mean']:.2f} ± {100 * row['val_std']:.2f} "
            f"| {100 * row['tta_mean']:.2f} | {100 * row['ens']:.2f} | {100 * row['ens_tta']:.2f} "
            f"| {100 * row['curve'][-1]['train']:.1f} | {row['train_seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
