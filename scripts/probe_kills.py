"""Kill real `catdog train` runs with kill -9 in each phase, then check that they recover.

    python scripts/probe_kills.py --trials 5 [--seed 0] [--photos DIR]

For each phase (decode, first epoch, validation, checkpoint write, plotting) and each of
`--trials` seeded random moments, it starts a real `catdog train` subprocess, waits (from
outside: stdout lines, run files, the cache's temporary folder) for the phase to begin, kills
it at a random moment, then runs the next command a user would: `catdog train --resume RUN`
where a last.pt was saved, else the same command again. A resumed run's final weights are
compared bitwise with an uninterrupted run of the same config. It drives the product only; it
re-implements nothing. The table:

    phase | kills | landed | next command succeeded | resumes bitwise

`landed` counts the kills whose leftover files show they hit the phase (see `landed`).
"""

import argparse
import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from catdog.runs import read_metrics

PHASE_RUN = [
    "--set", "data.image_size=32", "--set", "model.hidden=[1024]", "--set", "model.dropout=0.2",
    "--set", "optimizer.name=momentum", "--set", "train.batch_size=4", "--set", "train.epochs=3",
    "--set", "train.progress=false", "--set", "train.threads=1", "--set", "data.workers=0",
    "--set", "data.val_fraction=0.75", "--set", "eval.batch_size=1", "--set", "eval.tta=true",
]  # fmt: skip
EPOCHS = 3
DECODE_RUN = [
    "--set", "data.image_size=16", "--set", "model.hidden=[32]", "--set", "train.epochs=2",
    "--set", "train.progress=false", "--set", "data.workers=0",
]  # fmt: skip
PHASES = ("decode", "first epoch", "validation", "checkpoint write", "plotting")


def catdog(*args: object, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "catdog", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def wait_until(condition, timeout: float, poll: float = 0.002):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(poll)
    return value


def metrics_rows(run_dir: Path) -> int:
    try:
        return max(0, len((run_dir / "metrics.csv").read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def epochs_done(run_dir: Path) -> int | None:
    if not (run_dir / "last.pt").is_file():
        return None
    return torch.load(run_dir / "last.pt", weights_only=True)["progress"]["epoch"]


def slow_folder(folder: Path, count: int = 200) -> Path:
    """Links to a few large photos: a first decode of seconds."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sources = []
    for i in range(8):
        source = folder.parent / f"src{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (768, 1024, 3), dtype=np.uint8)).save(source)
        sources.append(source)
    for i in range(count):
        (folder / f"{'cat' if i % 2 else 'dog'}.{i}.jpg").symlink_to(sources[i % 8])
    return folder


class Run:
    """A `catdog train` subprocess whose stdout lines are read on a thread as they come."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "catdog", *args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for_line(self, prefix: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.stdout.append(line)
            if line.lstrip().startswith(prefix):
                return
        raise TimeoutError(f"no line starting {prefix!r} within {timeout} s")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=60)
        self.reader.join(timeout=30)  # it has read to the end: what was written before the kill
        while not self.lines.empty():
            self.stdout.append(self.lines.get())


def kill_in(phase: str, run: Run, run_dir: Path, cache: Path, timing: tuple[float, float], rng):  # type: ignore[no-untyped-def]
    train_2, validation = timing
    if phase == "decode":
        wait_until(lambda: any(cache.glob("*.tmp-*/pixels.npy")), 300, poll=0.01)
        time.sleep(rng.uniform(0.0, 0.5))
    elif phase == "first epoch":
        run.wait_for_line("optimizer")
        time.sleep(rng.uniform(0.0, 0.8 * train_2))
    elif phase == "validation":
        run.wait_for_line("epoch   1/")
        time.sleep(train_2 + rng.uniform(0.2, 0.8) * validation)
    elif phase == "checkpoint write":
        wait_until(lambda: metrics_rows(run_dir) >= 2, 300)
        time.sleep(rng.uniform(0.0, 0.06))
    else:
        run.wait_for_line(f"epoch {EPOCHS:>3}/")
        time.sleep(rng.uniform(0.0, 0.15))
    run.kill()


def landed(phase: str, run_dir: Path, stdout: str) -> bool:
    if phase == "decode":
        return not (run_dir / "config.yaml").exists()
    if phase == "first epoch":
        return (run_dir / "config.yaml").is_file() and metrics_rows(run_dir) == 0
    if phase == "validation":
        return metrics_rows(run_dir) == 1 and epochs_done(run_dir) == 1
    if phase == "checkpoint write":
        return any(run_dir.glob(".*.pt.*.tmp"))
    return epochs_done(run_dir) == EPOCHS and "run: " not in stdout


def bitwise(a: Path, b: Path) -> bool:
    x = torch.load(a, weights_only=True)["model"]
    y = torch.load(b, weights_only=True)["model"]
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3, help="kills per phase")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--photos", type=Path, help="a photo folder (default: demo photos)")
    parser.add_argument("--phases", nargs="*", default=list(PHASES), choices=PHASES)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="probe-kills-") as scratch:
        work = Path(scratch)
        cache = work / "cache"
        env = {**os.environ, "CATDOG_CACHE_DIR": str(cache)}
        photos = options.photos
        if photos is None:
            photos = work / "demo"
            made = catdog("make-demo-data", photos, "--per-class", "60", env=env)
            assert made.returncode == 0, made.stderr
        base = ["train", "--set", f"data.root={photos}", *PHASE_RUN]
        whole = catdog(*base, "--set", f"output.dir={work}", "--set", "output.name=whole", env=env)
        assert whole.returncode == 0, whole.stderr[-2000:]
        rows = read_metrics(work / "whole" / "metrics.csv")
        timing = (rows[1]["seconds"], rows[0]["elapsed"] - rows[0]["seconds"])
        slow = slow_folder(work / "slow" / "photos") if "decode" in options.phases else None

        rng = random.Random(options.seed)
        table = []
        for phase in options.phases:
            kills = hits = succeeded = resumed = bitwise_equal = 0
            for trial in range(options.trials):
                run_dir = work / "runs" / f"{phase.replace(' ', '-')}-{trial}"
                if phase == "decode":
                    shutil.rmtree(cache, ignore_errors=True)  # each trial's: a first decode
                    args = ["train", "--set", f"data.root={slow}", *DECODE_RUN]
                else:
                    args = list(base)
                args += [
                    "--set",
                    f"output.dir={run_dir.parent}",
                    "--set",
                    f"output.name={run_dir.name}",
                ]
                run = Run(args, env)
                kill_in(phase, run, run_dir, cache, timing, rng)
                kills += 1
                hits += landed(phase, run_dir, "".join(run.stdout))
                saved = (run_dir / "last.pt").is_file()
                after = (
                    catdog("train", "--resume", run_dir, env=env)
                    if saved
                    else catdog(*args, env=env)
                )
                succeeded += after.returncode == 0
                if saved and after.returncode == 0:
                    resumed += 1
                    bitwise_equal += bitwise(run_dir / "last.pt", work / "whole" / "last.pt")
            table.append((phase, kills, hits, succeeded, f"{bitwise_equal}/{resumed}"))
            print(f"done: {phase}", file=sys.stderr, flush=True)

    header = ("phase", "kills", "landed", "next command succeeded", "resumes bitwise")
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *table]:
        print(" | ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
