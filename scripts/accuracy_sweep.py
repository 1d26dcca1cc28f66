"""Lab notebook: many recipes at once (e.g. on one GPU), each trained through the product.

A plan file has one recipe a line, `TAG: FLAGS`, where FLAGS are `scripts/accuracy_research.py`'s
(mostly `--set KEY=VALUE`, exactly as `catdog train --set` takes them); `#` starts a comment and
a recipe may have no flags. Everything after `--` goes to every recipe before its own flags, so
a plan's `--set` wins over a common one. Recipes go to a pool of `--jobs` processes in plan
order, each `python scripts/accuracy_research.py --tag TAG --results RESULTS COMMON FLAGS`; none
starts after `--deadline` seconds, and any still running at `--deadline + --grace` is stopped.
Each recipe's output is appended to `--log`; at the end the results of this plan are printed as
a markdown table.

    python scripts/accuracy_sweep.py scripts/sweeps/one-network.txt --jobs 2 \\
        --results one-network.jsonl -- --config configs/default.yaml --seeds 0 1 2 \\
        --out /tmp/one-network --set model.ensemble=1 --set train.epochs=150 \\
        --set train.schedule.warmup_epochs=7.5
"""

import argparse
import json
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

RESEARCH = Path(__file__).resolve().parent / "accuracy_research.py"


def read_plan(path: Path) -> list[tuple[str, list[str]]]:
    runs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        tag, colon, flags = line.partition(":")
        if not colon or not tag.strip():
            raise SystemExit(f"error: {path}:{number}: expected 'TAG: FLAGS', got {line!r}")
        runs.append((tag.strip(), shlex.split(flags)))
    return runs


def table(results: Path, tags: list[str]) -> list[str]:
    """The plan's recipes, as far as they finished, in plan order (the last line of a tag)."""
    rows: dict[str, dict[str, Any]] = {}
    if results.exists():
        for line in results.read_text().splitlines():
            row = json.loads(line)
            if row["tag"] in tags:
                rows[row["tag"]] = row
    figures = {
        "last": "last",
        "best_pt": "best.pt",
        "judge": "judge",
        "judge_views": "judge, views",
    }
    lines = [
        "| recipe | seeds | " + " | ".join(f"{name}, mean ± std" for name in figures.values())
        + " | train s |",
        "| --- " * (len(figures) + 3) + "|",
    ]  # fmt: skip
    for tag in tags:
        if tag not in rows:
            lines.append(f"| {tag} | not finished |" + " |" * (len(figures) + 1))
            continue
        row = rows[tag]
        seconds = row["train_seconds"]
        cells = [
            f"{100 * row[f'{key}_mean']:.2f} ± {100 * row[f'{key}_std']:.2f}"
            if f"{key}_mean" in row
            else "—"  # a refit has no split; a run without --judge no judge
            for key in figures
        ]
        lines.append(
            f"| {tag} | {len(row['seeds'])} | {' | '.join(cells)} "
            f"| {min(seconds):.0f}–{max(seconds):.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("plan", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=3600.0)
    parser.add_argument("--grace", type=float, default=600.0)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--log", default="/dev/null")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    common = argv[split + 1 :]
    plan = read_plan(args.plan)
    start = time.monotonic()
    log = open(args.log, "a")  # noqa: SIM115 - shared by the worker threads

    def one(recipe: tuple[str, list[str]]) -> str:
        tag, flags = recipe
        elapsed = time.monotonic() - start
        if elapsed > args.deadline:
            return f"{tag}: not started"
        command = [sys.executable, str(RESEARCH), "--tag", tag, "--results", str(args.results)]
        command += common + flags
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=args.deadline + args.grace - elapsed,
            )
            output, status = done.stdout + done.stderr, f"exit {done.returncode}"
        except subprocess.TimeoutExpired as stopped:
            output, status = str(stopped.stdout or ""), "stopped at the deadline"
        log.write(f"===== {tag} ({status}): {shlex.join(flags)}\n{output}\n")
        log.flush()
        last = output.strip().splitlines()[-1:] or [""]
        return f"{tag}: {status} after {time.monotonic() - start:.0f} s: {last[0]}"

    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(one, plan):
            print(line, flush=True)
    print("\n".join(["", *table(args.results, [tag for tag, _ in plan])]))


if __name__ == "__main__":
    main()
