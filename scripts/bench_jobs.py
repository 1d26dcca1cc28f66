"""The speed-up of `catdog compare --jobs 2` over `--jobs 1` on the same comparison.

It runs the same comparison (two optimizers × N seeds on demo photos) through the real CLI,
once with --jobs 1 and once with --jobs 2, in alternating order over the repeats, and prints
the wall-clock seconds of each and their ratio. The runs' metrics are equal either way (the
tests check that); only the time differs. Wall time is what --jobs saves, so a busy shared
machine makes this noisy: the load average is printed beside it.

What limits it: with --jobs 1 the runs train in one process at the machine's threads, with
--jobs 2 in two processes at cores/2 threads each, so the gain is what one process could not
use (small matrices keep a thread idle; Python's per-step overhead runs on one core), minus the
start of a Python process with torch per run (a few seconds each).

    PYTHONPATH=. python scripts/bench_jobs.py                  # 2 × 3 runs of 5 epochs
    PYTHONPATH=. python scripts/bench_jobs.py --seeds 2 --epochs 10
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from catdog.synthetic import make_demo_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_jobs-"))
    env = {**os.environ, "CATDOG_CACHE_DIR": os.environ.get("CATDOG_CACHE_DIR", str(work))}
    make_demo_data(work / "photos", per_class=args.per_class, seed=0, progress=False)
    config = work / "c.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"root": str(work / "photos"), "workers": 0},
        "model": {"hidden": [512, 128]},
        "optimizer": {"name": "momentum", "lr": 0.03},
        "train": {"epochs": args.epochs, "progress": False},
    }))  # fmt: skip
    command = [sys.executable, "-m", "catdog", "compare", str(config), "--grid",
               "optimizer.name=momentum,adam", "--set", "optimizer.lr=0.001",
               "--seeds", str(args.seeds)]  # fmt: skip
    subprocess.run([*command[:4], str(config), "--set", "train.epochs=1", "--out-dir",
                    str(work / "warm")], env=env, check=True, capture_output=True)  # fmt: skip
    seconds: dict[int, list[float]] = {1: [], 2: []}
    for repeat in range(args.repeats):
        for jobs in (1, 2) if repeat % 2 == 0 else (2, 1):
            started = time.perf_counter()
            subprocess.run([*command, "--jobs", str(jobs), "--out-dir",
                            str(work / f"j{jobs}-{repeat}")], env=env, check=True,
                           capture_output=True)  # fmt: skip
            seconds[jobs].append(time.perf_counter() - started)
            print(f"repeat {repeat + 1}, --jobs {jobs}: {seconds[jobs][-1]:.1f} s "
                  f"(load average {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
    one, two = min(seconds[1]), min(seconds[2])
    print(
        f"\n{2 * args.seeds} runs of {args.epochs} epochs on {2 * args.per_class} demo photos, "
        f"{os.cpu_count()} cores: --jobs 1 {one:.1f} s, --jobs 2 {two:.1f} s, "
        f"speed-up {one / two:.2f}x (best of {args.repeats})"
    )


if __name__ == "__main__":
    main()
