"""The cost of steps.csv: the share of training time spent writing it (goal: under 2%).

It trains one run through the product (`catdog.experiment.run`, so the step log is the one every
run has) with `StepLog`'s two hooks wrapped in a timer: the seconds inside them over the run's
training seconds is the cost. The norms (gradient, update/weight) are taken every
`step_log.STATS_EVERY` steps; `--every` changes it for this measurement.

    PYTHONPATH=. python scripts/bench_steps.py                       # the default network, 32 px
    PYTHONPATH=. python scripts/bench_steps.py --every 1 --batch-size 16
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from catdog import step_log
from catdog.config import load_config
from catdog.experiment import run
from catdog.synthetic import make_demo_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--every", type=int, default=step_log.STATS_EVERY)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_steps-"))
    os.environ.setdefault("CATDOG_CACHE_DIR", str(work / "cache"))
    make_demo_data(work / "photos", per_class=args.per_class, seed=0, progress=False)
    spent = {"seconds": 0.0, "calls": 0}
    for name in ("after_step", "after_epoch", "close"):
        original = getattr(step_log.StepLog, name)

        def timed(self, *a, _original=original, **k):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return _original(self, *a, **k)
            finally:
                spent["seconds"] += time.perf_counter() - started
                spent["calls"] += 1

        setattr(step_log.StepLog, name, timed)
    original_init = step_log.StepLog.__init__

    def init(self, run_dir, every=args.every):  # type: ignore[no-untyped-def]
        original_init(self, run_dir, every)

    step_log.StepLog.__init__ = init  # type: ignore[method-assign]
    config = load_config(None, [
        f"data.root={work / 'photos'}", "data.workers=0", "model.hidden=[512,128]",
        f"train.epochs={args.epochs}", f"train.batch_size={args.batch_size}",
        "train.progress=false", "train.threads=1", "optimizer.name=momentum",
        "optimizer.lr=0.03", f"output.dir={work / 'runs'}",
    ])  # fmt: skip
    summary = run(config, "steps")
    rows = sum(1 for _ in (summary.run_dir / step_log.STEPS).open()) - 1
    print(
        f"\n{rows} steps ({args.epochs} epochs, batch {args.batch_size}, norms every "
        f"{args.every}): {spent['seconds']:.3f} s in the step log of {summary.seconds:.2f} s "
        f"training = {spent['seconds'] / summary.seconds:.2%} (goal: under 2%)"
    )


if __name__ == "__main__":
    main()
