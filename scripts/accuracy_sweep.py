"""Lab notebook: run many `accuracy_research.py` variants at once, e.g. on one GPU.

Each line of the plan file is `TAG: FLAGS` (FLAGS added to the research script's); `#` starts a
comment. Runs go to a pool of `--jobs` processes in plan order; none starts after `--deadline`
seconds, and any still running at `--deadline + --grace` is stopped. Results are JSON lines in
`--results` (one per finished run, as the research script writes them); each run's output is
appended to `--log`.

    python scripts/accuracy_sweep.py PLAN --jobs 12 --deadline 240 --results out.jsonl \
        -- --device cuda --members 4
"""

import argparse
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RESEARCH = Path(__file__).resolve().parent / "accuracy_research.py"


def read_plan(path: Path) -> list[tuple[str, list[str]]]:
    runs = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            tag, flags = line.split(":", 1)
            runs.append((tag.strip(), shlex.split(flags)))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("plan", type=Path)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--deadline", type=float, default=300.0)
    parser.add_argument("--grace", type=float, default=60.0)
    parser.add_argument("--results", required=True)
    parser.add_argument("--log", default="/dev/null")
    # Everything after `--` goes to every run.
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    common = argv[split + 1 :]
    start = time.monotonic()
    log = open(args.log, "a")  # noqa: SIM115 - shared by the worker threads

    def one(run: tuple[str, list[str]]) -> str:
        tag, flags = run
        elapsed = time.monotonic() - start
        if elapsed > args.deadline:
            return f"{tag}: not started"
        command = [sys.executable, str(RESEARCH), "--tag", tag, "--results", args.results]
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
        return f"{tag}: {status} after {time.monotonic() - start:.0f} s"

    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(one, read_plan(args.plan)):
            print(line, flush=True)


if __name__ == "__main__":
    main()
