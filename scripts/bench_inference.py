"""How fast `catdog predict` labels photos, against `catdog evaluate` on the same photos, and
how fast and light the CLI starts, side by side in one run.

    .venv/bin/python scripts/bench_inference.py                 # 2,000 shared photos
    .venv/bin/python scripts/bench_inference.py --before 3a6dc87  # also the CLI of that commit

Every figure is a real `catdog` subprocess, timed from outside (wall clock, start-up included),
its peak resident memory read from `getrusage` of a fresh parent. "cold" runs start from an
empty photo cache (the OS file cache is warm: the photos were read before); "cached" runs read
the cache the cold run wrote. Every subprocess figure is the best of --repeats runs. The run
predicted with is trained here first (the default recipe's network, one epoch) unless --run.
`--before REF` runs the CLI of commit REF (extracted with `git archive`) beside this one.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "data" / "dogs-vs-cats" / "train"

# Runs `argv` and prints "<seconds> <peak RSS in MB>": a fresh parent per command, so the
# RUSAGE_CHILDREN maximum is this command's alone.
MEASURE = """
import resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
seconds = time.perf_counter() - started
if done.returncode:
    sys.exit(f"failed ({done.returncode}): {' '.join(sys.argv[1:])}\\n{done.stderr[-2000:]}")
print(seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""


def measure(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of `argv`, run from `cwd` (not the checkout: `-m catdog`
    would import the checkout's package from the current folder whatever PYTHONPATH says)."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *argv], capture_output=True, text=True, env=env, cwd=cwd
    )
    if out.returncode:
        sys.exit(out.stderr)
    seconds, megabytes = out.stdout.split()
    return float(seconds), float(megabytes)


def best_of(repeats: int, argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    runs = [measure(argv, env, cwd) for _ in range(repeats)]
    return min(s for s, _ in runs), min(m for _, m in runs)


def pick_photos(count: int, folder: Path) -> Path:
    """count/2 cats and count/2 dogs of the shared photos, linked into `folder`."""
    folder.mkdir()
    for kind in ("cat", "dog"):
        for k in range(1, count // 2 + 1):  # Kaggle numbers them from 1
            (folder / f"{kind}.{k}.jpg").symlink_to(PHOTOS / f"{kind}.{k}.jpg")
    return folder


def train_run(photos: Path, runs: Path, env: dict[str, str], source: Path = REPO) -> Path:
    """One epoch of the default recipe, by the catdog of `source` (its own config schema)."""
    subprocess.run(
        [
            sys.executable, "-m", "catdog", "train",
            "--config", str(source / "configs" / "default.yaml"),
            "--set", f"data.root={photos}", "--set", "train.epochs=1",
            "--set", "train.progress=false", "--set", f"output.dir={runs}",
            "--set", "output.name=bench",
        ],
        check=True, env=env, stdout=subprocess.DEVNULL, cwd=runs.parent,
    )  # fmt: skip
    return runs / "bench"


def checkout(ref: str, folder: Path) -> Path:
    """Commit `ref`'s files in `folder` (read-only use of the repository)."""
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True)
    if archive.returncode:
        sys.exit(archive.stderr.decode())
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def row(label: str, seconds: float, megabytes: float, photos: int | None = None) -> str:
    rate = f"{photos / seconds:9,.0f} photos/s" if photos else " " * 18
    memory = "" if megabytes != megabytes else f"{megabytes:7.0f} MB"  # nan: not measured
    return f"  {label:<64} {seconds:7.2f} s  {rate}  {memory}"


def in_process(run: Path, photos: Path, work: Path, count: int) -> None:
    """This checkout's predict and evaluate called in this process: the rate past start-up."""
    from catdog.evaluate import evaluate_photos
    from catdog.predict import collect_photos, predict

    print("in this process (no interpreter or torch start-up), this checkout:")
    predict(run, [photos / "dog.1.jpg"], progress=False)  # warm-up: torch's first calls
    for name in ("evaluate_photos(RUN, FOLDER)", "predict(RUN, collect_photos([FOLDER]))"):
        os.environ["CATDOG_CACHE_DIR"] = str(work / f"cache-in-process-{name[:4]}")
        for state in ("cold", "cached", "cached"):
            started = time.perf_counter()
            if name.startswith("evaluate"):
                evaluate_photos(run, photos, progress=False)
            else:
                predict(run, collect_photos([photos]), progress=False)
            print(row(f"{name}, {state}", time.perf_counter() - started, float("nan"), count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--run", type=Path, help="a trained run (default: train one here)")
    parser.add_argument("--before", metavar="REF", help="also time the CLI of commit REF")
    parser.add_argument("--repeats", type=int, default=3, help="start-up runs; the best counts")
    args = parser.parse_args()
    if not PHOTOS.is_dir():
        sys.exit(f"{PHOTOS}: the shared photos are not there")
    work = Path(tempfile.mkdtemp(prefix="bench_inference-"))
    try:
        photos = pick_photos(args.photos, work / "photos")
        base = {**os.environ, "CATDOG_CACHE_DIR": str(work / "cache-train")}
        one_photo = str(photos / "dog.1.jpg")
        sides = {"now": (base, args.run or train_run(photos, work / "runs", base))}
        if args.before:
            old = checkout(args.before, work / "before")
            env = {**base, "PYTHONPATH": str(old)}
            sides[f"before ({args.before})"] = (env, train_run(photos, work / "old", env, old))
        catdog = [sys.executable, "-m", "catdog"]
        files = [str(p) for p in sorted(photos.iterdir())]
        print(f"{args.photos:,} photos of {PHOTOS}, {os.cpu_count()} CPUs; runs:")
        for side, (_, run) in sides.items():
            print(f"  {side}: {run}")
        print(f"  {'':<64} {'wall':>9}  {'throughput':>18}  {'peak RSS':>10}")
        # Each job for every side in turn, so a change in the machine's load hits both alike.
        for job in ("evaluate", "predict"):
            for state in ("cold", "cached"):
                for side, (env, run) in sides.items():
                    if job == "evaluate":
                        name, argv = "evaluate --data FOLDER", ["evaluate", str(run), "--data"]
                        argv.append(str(photos))
                    elif side == "now":
                        name, argv = "predict FOLDER", ["predict", str(run), str(photos)]
                    else:  # the old predict took files only (a shell glob), one at a time
                        name, argv = "predict FILE... (a glob)", ["predict", str(run), *files]
                    # Best of --repeats; a cold run gets a cache folder of its own each time.
                    tries = []
                    for attempt in range(args.repeats):
                        folder = f"cache-{side}-{job}" + (f"-{attempt}" if state == "cold" else "")
                        cache = {"CATDOG_CACHE_DIR": str(work / folder)}
                        tries.append(measure([*catdog, *argv], {**env, **cache}, work))
                    seconds, megabytes = min(t for t, _ in tries), min(m for _, m in tries)
                    label = f"{side}: {name}, {state} (best of {args.repeats})"
                    print(row(label, seconds, megabytes, args.photos))
        startup = {
            "catdog --help": [*catdog, "--help"],
            "catdog predict --help": [*catdog, "predict", "--help"],
            "catdog predict RUN ONE.jpg": None,
        }
        for name, argv in startup.items():
            for side, (env, run) in sides.items():
                argv_side = argv or [*catdog, "predict", str(run), one_photo]
                figures = best_of(args.repeats, argv_side, env, work)
                print(row(f"{side}: {name} (best of {args.repeats})", *figures))
        torch_import = best_of(args.repeats, [sys.executable, "-c", "import torch"], base, work)
        print(row(f"python -c 'import torch' (best of {args.repeats})", *torch_import))
        in_process(sides["now"][1], photos, work, args.photos)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.0f} s in all)")
