"""The overhead of a tune trial against a plain `catdog train` of the same config (goal ≤ 5%).

Both sides run the product in this process, interleaved repeat after repeat: a plain run is
`catdog.experiment.run` (what `catdog train` calls); a tune is `catdog.tune` over a space of one
choice (the same lr), so each of its trials trains exactly that config, plus what a tune adds:
Optuna's ask/tell and journal, the per-epoch report to the pruner, and at the end trials.csv,
tune.png and best.yaml. The clock is this process's CPU time at one thread, which other users
of a busy shared machine inflate far less than wall time; a ratio is the median over repeats.

    PYTHONPATH=. python scripts/bench_tune.py                  # 8 trials of 10 epochs, 2,000 photos
    PYTHONPATH=. python scripts/bench_tune.py --epochs 3 --per-class 300 --trials 2

The tune's fixed cost (trials.csv, tune.png, reading the study back: about half a second) is
shared by its trials, so the per-trial overhead shrinks as trials grow longer or more.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from catdog.config import config_dict, load_config
from catdog.experiment import run
from catdog.synthetic import make_demo_data
from catdog.tune import TuneRequest, start, tune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_tune-"))
    os.environ.setdefault("CATDOG_CACHE_DIR", str(work / "cache"))
    make_demo_data(work / "photos", per_class=args.per_class, seed=0, progress=False)
    config = load_config(None, [
        f"data.root={work / 'photos'}", "data.workers=0", "model.hidden=[512,128]",
        f"train.epochs={args.epochs}", "train.progress=false", "train.threads=1",
        "optimizer.name=momentum", "optimizer.lr=0.03", f"output.dir={work / 'runs'}",
    ])  # fmt: skip
    run(config, "warm-up")  # decodes the photos into the cache once, imports everything
    base = config_dict(config)
    plain, trial = [], []
    for repeat in range(args.repeats):
        started = time.process_time()
        run(config, f"plain-{repeat}")
        plain.append(time.process_time() - started)
        request = TuneRequest(base, ["optimizer.lr=0.03"], args.trials)
        started = time.process_time()
        tune(start(request, work / "tunes", f"tune-{repeat}"))
        trial.append((time.process_time() - started) / args.trials)
        print(f"repeat {repeat + 1}: plain {plain[-1]:.2f} s, a tune trial {trial[-1]:.2f} s "
              f"(ratio {trial[-1] / plain[-1]:.3f})", flush=True)  # fmt: skip
    ratios = [t / p for t, p in zip(trial, plain, strict=True)]
    print(
        f"\n{args.epochs} epochs on {2 * args.per_class} demo photos, CPU seconds at 1 thread:\n"
        f"plain train  median {statistics.median(plain):.2f} s\n"
        f"tune trial   median {statistics.median(trial):.2f} s "
        f"(a tune of {args.trials} trials, per trial)\n"
        f"overhead     {statistics.median(ratios) - 1:+.1%} (median of per-repeat ratios; "
        "goal: at most +5%)"
    )


if __name__ == "__main__":
    main()
