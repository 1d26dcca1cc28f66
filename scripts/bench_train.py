"""End-to-end training speed: the default recipe's iteration, and whole `catdog train` runs.

    python scripts/bench_train.py iteration [--threads 1,2] [--config CONFIG] [--set K=V]
    python scripts/bench_train.py command --baseline REV [--epochs 20] [--repeats 2] [--set K=V]

The speed issue's figures compare the same work as the baseline's default: 4 networks, 250
epochs, a validation split (`--set model.ensemble=4 --set data.val_fraction=0.2 --epochs 250`);
the default trains 8 networks for 500 epochs on every photo since.

`iteration` times one training iteration of the config's network (its ensemble, batch norm,
whitening and batch size; random photos) through catdog's own `train_step`, side by side in
one process, with our optimizer against the same loop with torch's fused Adam, in fp32 and
bf16, and prints the ratios. It also measures this machine's matrix-multiply rate and prints
the iteration's FLOPs at that rate: the bound no implementation of this network can beat.

`command` runs the whole `catdog train --config CONFIG` (start-up, decoding from the cache,
compilation included) of this checkout and of a baseline revision (checked out with
`git worktree` into a temporary folder), each with its own CONFIG (the recipe as it stood
then), alternately, on the shared photos, and prints wall time, peak RSS and the ratio. Both
read the same photo cache, warmed before the first timed run.

The machine is noisy: compare ratios, not absolute times, and repeat.
"""

import argparse
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def iteration(args: argparse.Namespace) -> None:
    from catdog.builders import build_model, make_optimizer
    from catdog.config import load_config
    from catdog.losses import LOSSES
    from catdog.train_step import train_step

    config = load_config(args.config, args.set)
    batch = config.train.batch_size if isinstance(config.train.batch_size, int) else 128
    members = config.model.ensemble
    x = torch.randn(batch, config.data.in_features)
    y = (torch.rand(batch) > 0.5).float()
    loss_fn = LOSSES[config.loss]

    def make(kind: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = build_model(config)
        if kind == "ours":
            return model, make_optimizer(config, model)
        return model, torch.optim.Adam(model.parameters(), lr=config.optimizer.lr, fused=True)

    def seconds(kind: str, precision: str) -> float:
        model, optimizer = make(kind)
        model.train()
        for _ in range(args.warmup):  # compilation and caches outside the timing
            train_step(model, optimizer, loss_fn, x, y, float(members), precision)
        times = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            for _ in range(args.steps):
                train_step(model, optimizer, loss_fn, x, y, float(members), precision)
            times.append((time.perf_counter() - started) / args.steps)
        return statistics.median(times)

    flops = iteration_flops(config, batch)
    print(
        f"config {args.config}: {batch} photos × {config.data.in_features} features, "
        f"{members} × {config.model.hidden}, optimizer {config.optimizer.name}"
    )
    print(f"one iteration: {flops / 1e9:.2f} GFLOP (forward + backward matrix products)")
    for threads in args.threads:
        torch.set_num_threads(threads)
        rate = {p: matmul_rate(p) for p in ("fp32", "bf16")}
        print(
            f"\n{threads} thread(s): matmul {rate['fp32'] / 1e9:.0f} GFLOP/s fp32, "
            f"{rate['bf16'] / 1e9:.0f} GFLOP/s bf16"
        )
        results = {}
        for precision in ("fp32", "bf16"):
            for kind in ("ours", "torch-fused-adam"):
                results[kind, precision] = seconds(kind, precision)
        for precision in ("fp32", "bf16"):
            ours, fused = results["ours", precision], results["torch-fused-adam", precision]
            bound = flops / rate[precision]
            print(
                f"  {precision}: ours {ours * 1e3:6.2f} ms  torch fused Adam {fused * 1e3:6.2f} ms"
                f"  ours/fused {ours / fused:.2f}×  matmul bound {bound * 1e3:5.2f} ms "
                f"(ours/bound {ours / bound:.1f}×)"
            )
        base = results["ours", "fp32"]
        print(f"  bf16/fp32 (ours): {results['ours', 'bf16'] / base:.2f}×")


def iteration_flops(config, batch: int) -> float:  # type: ignore[no-untyped-def]
    """2·m·n·k per product: forward, and backward's two products per trained layer (the
    first layer's input gradient is not needed), plus the whitening's forward product."""
    widths = [config.data.in_features, *config.model.hidden, 1]
    members = config.model.ensemble
    total = 0.0
    for layer, (a, b) in enumerate(itertools.pairwise(widths)):
        products = 3 if layer > 0 else 2
        total += products * 2 * batch * a * b * members
    if config.data.normalization == "zca":
        total += 2 * batch * widths[0] ** 2
    return total


def matmul_rate(precision: str, size: int = 1024, repeats: int = 10) -> float:
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def command(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as work:
        baseline = Path(work) / "baseline"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(baseline), args.baseline],
            check=True,
            capture_output=True,
        )
        try:
            checkouts = {"this": REPO, f"baseline {args.baseline}": baseline}
            outputs = Path(work) / "runs"
            # Each side trains its own default recipe; the photos are the shared ones either way
            # (a relative data.root would resolve inside each checkout).
            photos = REPO.parent / "shared" / "data" / "dogs-vs-cats" / "train"
            overrides = [
                f"data.root={photos}",
                f"train.epochs={args.epochs}",
                "train.progress=false",
                f"output.dir={outputs}",
                *args.set,
            ]
            print(
                f"catdog train --config {args.config} " + " ".join(f"--set {o}" for o in overrides)
            )
            # Warm the shared photo cache (and any compile caches) outside the timing.
            for checkout in checkouts.values():
                run_train(checkout, args.config, [*overrides, "train.epochs=1"])
            times: dict[str, list[float]] = {name: [] for name in checkouts}
            memory: dict[str, list[float]] = {name: [] for name in checkouts}
            for _ in range(args.repeats):
                for name, checkout in checkouts.items():
                    seconds, rss = run_train(checkout, args.config, overrides)
                    times[name].append(seconds)
                    memory[name].append(rss)
                    print(
                        f"  {name:<24} {seconds:7.1f} s  peak RSS {rss / 2**20:6.0f} MB", flush=True
                    )
            this, base = (statistics.median(times[name]) for name in checkouts)
            print(f"median: this {this:.1f} s, baseline {base:.1f} s: ratio {this / base:.2f}×")
            print(
                f"peak RSS: this {max(memory['this']) / 2**20:.0f} MB, baseline "
                f"{max(memory[f'baseline {args.baseline}']) / 2**20:.0f} MB"
            )
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)],
                capture_output=True,
            )


def run_train(checkout: Path, config: str, overrides: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (bytes) of one `catdog train` from `checkout`."""
    sets = [part for override in overrides for part in ("--set", override)]
    probe = (
        "import resource, runpy, sys; sys.argv = ['catdog', *sys.argv[1:]];\n"
        "try:\n    runpy.run_module('catdog', run_name='__main__')\n"
        "finally:\n"
        "    print('peak-rss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
    )
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", probe, "train", "--config", str(checkout / config), *sets],
        cwd=checkout,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(checkout), "PATH": "/usr/bin:/bin"},
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{checkout}: catdog train failed:\n{result.stderr[-2000:]}")
    rss = float(result.stderr.rsplit("peak-rss", 1)[1].split()[0]) * 1024  # ru_maxrss is KiB
    return seconds, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    one = sub.add_parser("iteration")
    one.add_argument("--config", default="configs/default.yaml")
    one.add_argument("--threads", type=lambda s: [int(t) for t in s.split(",")], default=[1, 2])
    one.add_argument("--steps", type=int, default=20)
    one.add_argument("--rounds", type=int, default=7)
    one.add_argument("--warmup", type=int, default=10)
    one.add_argument("--set", action="append", default=[], help="a config override, KEY=VALUE")
    whole = sub.add_parser("command")
    whole.add_argument("--baseline", required=True, help="git revision to compare against")
    whole.add_argument("--config", default="configs/default.yaml")
    whole.add_argument("--epochs", type=int, default=20)
    whole.add_argument("--repeats", type=int, default=2)
    whole.add_argument("--set", action="append", default=[], help="extra --set for both runs")
    args = parser.parse_args()
    iteration(args) if args.mode == "iteration" else command(args)


if __name__ == "__main__":
    main()
