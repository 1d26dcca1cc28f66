"""Tune the genetic algorithm on the real photos, one generation per step, from catdog's blocks.

The recipe is a config plus `--set` overrides, as `catdog train` takes them (default:
configs/genetic.yaml: 16x16 grayscale, hidden [16], BCE, population 32, elite 2, tournament 3,
uniform crossover, sigma 0.01 undecayed). For each seed the photos, split and normalisation are
the product's (`catdog.builders.prepare_data`: the cached decode, the seed's stratified split,
the training split's channel statistics, `catdog.batches.to_inputs`), and so are the network
(`build_model`), the optimizer (`make_optimizer`) and the loss (`catdog.losses.LOSSES`). What
this loop adds to `catdog train`: a generation budget and a time limit per seed, batches of
`train.batch_size` random training rows (`full`: the whole split) drawn anew each generation,
and the loss evaluations per second. It prints per seed the validation accuracy of the best
member and the wall time; with --reference also our Adam, full batch, on the same network and
split, as a gradient reference.

    timeout 900 python scripts/tune_genetic.py --seeds 0 1 2 --reference \\
        --set optimizer.mutation_std=0.02
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from catdog.batches import to_inputs
from catdog.builders import build_model, make_optimizer, prepare_data
from catdog.config import Config, load_config
from catdog.errors import ConfigError, DataError
from catdog.losses import LOSSES
from catdog.model import MLP
from catdog.optim import build_optimizer, step

GENETIC = Path(__file__).resolve().parent.parent / "configs" / "genetic.yaml"

Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def load_split(config: Config) -> Split:
    """(x_train, y_train, x_val, y_val) as the product's loop sees them, in memory."""
    data = prepare_data(config, progress=False)
    images = data.images

    def rows(indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_inputs(images.pixels[indices], data.mean, data.std)
        return x, torch.from_numpy(images.labels[indices]).float()

    return (*rows(data.train_indices), *rows(data.val_indices))


@torch.no_grad()
def accuracy(model: MLP, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model.probability(x).ge(0.5).float() == y).float().mean().item()


def evolve(args: argparse.Namespace, config: Config, data: Split) -> tuple[float, float]:
    """Validation accuracy of the best member and wall seconds."""
    x_train, y_train, x_val, y_val = data
    loss_fn = LOSSES[config.loss]
    torch.manual_seed(config.seed)
    model = build_model(config).eval()  # as the product runs it: no dropout noise in fitness
    optimizer = make_optimizer(config, model)
    batches = torch.Generator().manual_seed(config.seed)
    batch: tuple[torch.Tensor, torch.Tensor] = (x_train, y_train)

    def closure() -> torch.Tensor:
        return loss_fn(model(batch[0]), batch[1])

    size = config.train.batch_size
    batch_size = len(y_train) if size == "full" else min(int(size), len(y_train))
    start = time.perf_counter()
    generation = 0
    while generation < args.generations and time.perf_counter() - start < args.time_limit:
        if batch_size < len(y_train):
            rows = torch.randint(len(y_train), (batch_size,), generator=batches)
            batch = (x_train[rows], y_train[rows])
        with torch.no_grad():
            best = step(optimizer, closure)
        generation += 1
        if args.report_every and generation % args.report_every == 0:
            print(
                f"  seed {config.seed} gen {generation:5d} batch loss {best.item():.4f} "
                f"train acc {accuracy(model, x_train, y_train):.3f} "
                f"val acc {accuracy(model, x_val, y_val):.3f} "
                f"{time.perf_counter() - start:6.1f}s",
                flush=True,
            )
    wall = time.perf_counter() - start
    evaluations = getattr(optimizer, "evaluations", 0)
    print(
        f"seed {config.seed}: {generation} generations, {evaluations} evaluations, "
        f"{wall:.1f}s ({evaluations / wall:.0f} evaluations/s), "
        f"train acc {accuracy(model, x_train, y_train):.4f}, "
        f"val acc {accuracy(model, x_val, y_val):.4f}",
        flush=True,
    )
    return accuracy(model, x_val, y_val), wall


def reference(args: argparse.Namespace, config: Config, data: Split) -> None:
    """Our Adam, full batch, on the same network and loss: what gradients reach."""
    x_train, y_train, x_val, y_val = data
    loss_fn = LOSSES[config.loss]
    torch.manual_seed(config.seed)
    model = build_model(config)
    adam = build_optimizer("adam", model.parameters(), lr=args.reference_lr)

    def closure() -> torch.Tensor:
        adam.zero_grad(set_to_none=True)
        loss = loss_fn(model(x_train), y_train)
        loss.backward()
        return loss

    start = time.perf_counter()
    for _ in range(args.reference_steps):
        step(adam, closure)
    model.eval()
    print(
        f"reference Adam seed {config.seed}: {args.reference_steps} steps, "
        f"{time.perf_counter() - start:.1f}s, train acc {accuracy(model, x_train, y_train):.4f}, "
        f"val acc {accuracy(model, x_val, y_val):.4f}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", "-c", type=Path, default=GENETIC)
    parser.add_argument(
        "--set", "-s", action="append", default=[], help="override, as catdog train --set"
    )
    parser.add_argument("--generations", type=int, default=200)
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--report-every", type=int, default=0)
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--reference-steps", type=int, default=300)
    parser.add_argument("--reference-lr", type=float, default=1e-2)
    parser.add_argument("--threads", type=int, default=1, help="the box is shared")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    results = []
    for seed in args.seeds:
        try:
            config = load_config(args.config, [*args.set, f"seed={seed}"])
            if config.optimizer.name != "genetic":
                raise ConfigError(f"optimizer.name={config.optimizer.name}: this tunes 'genetic'")
            start = time.perf_counter()
            data = load_split(config)
        except (ConfigError, DataError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        weights = sum(p.numel() for p in build_model(config).parameters())
        print(
            f"seed {seed}: {len(data[1])} training / {len(data[3])} validation photos "
            f"({time.perf_counter() - start:.1f}s to load), val dog share {data[3].mean():.3f}, "
            f"{weights} weights, optimizer {config.optimizer.hyperparameters}",
            flush=True,
        )
        results.append(evolve(args, config, data))
        if args.reference:
            reference(args, config, data)
    accuracies = [acc for acc, _ in results]
    print(
        f"val acc mean {np.mean(accuracies):.4f} (min {min(accuracies):.4f}, max "
        f"{max(accuracies):.4f}) over seeds {args.seeds}; mean wall "
        f"{np.mean([wall for _, wall in results]):.1f}s per seed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
