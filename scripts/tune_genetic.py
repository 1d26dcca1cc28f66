"""Tune the genetic algorithm on the real photos: 16x16 grayscale, a tiny MLP, held-out 20%.

Throwaway loader (PIL decode -> 16x16 gray, cached as .npz under /tmp), full- or mini-batch
BCE/MSE on the sigmoid of `catdog.model.MLP`, one generation per step. Prints, per seed, the
validation accuracy of the best member, the wall time and the evaluations per second; with
--reference also full-batch Adam on the same network and split, as a gradient reference.
The defaults are the tuned configuration (16x16 gray, hidden [16], BCE, population 32,
elite 2, tournament 3, uniform crossover, sigma 0.01 undecayed, full batch, 200 generations).

    PYTHONPATH=. timeout 900 python scripts/tune_genetic.py --seeds 0 1 2 --reference
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from catdog.model import MLP
from catdog.optim.genetic import Genetic

PHOTOS = Path("../shared/data/dogs-vs-cats/train")


def load_photos(side: int, cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pixels uint8 [n, side*side], labels float32 [n], dog = 1), sorted by file name."""
    cache = cache_dir / f"catdog_gray{side}.npz"
    if cache.exists():
        saved = np.load(cache)
        return saved["pixels"], saved["labels"]
    if not PHOTOS.is_dir():
        raise SystemExit(f"{PHOTOS}: photo folder not found; run from the repository root")
    files = sorted(PHOTOS.glob("*.jpg"))
    pixels = np.empty((len(files), side * side), dtype=np.uint8)
    for row, path in enumerate(files):
        with Image.open(path) as image:
            image.draft("L", (side * 2, side * 2))  # JPEG decodes at reduced scale: much faster
            small = image.convert("L").resize((side, side), Image.Resampling.BILINEAR)
        pixels[row] = np.asarray(small, dtype=np.uint8).reshape(-1)
    labels = np.array([path.name.startswith("dog.") for path in files], dtype=np.float32)
    np.savez(cache, pixels=pixels, labels=labels)
    return pixels, labels


def split(
    pixels: np.ndarray, labels: np.ndarray, held_out: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shuffled (seed 0) train/validation split, standardised with the train mean and std."""
    order = np.random.default_rng(0).permutation(len(labels))
    cut = round(len(labels) * (1 - held_out))
    train, val = order[:cut], order[cut:]
    x = pixels.astype(np.float32)
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    return (
        torch.from_numpy(x[train]),
        torch.from_numpy(labels[train]),
        torch.from_numpy(x[val]),
        torch.from_numpy(labels[val]),
    )


def loss_of(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, labels)
    return ((torch.sigmoid(logits) - labels) ** 2).mean()


@torch.no_grad()
def accuracy(model: MLP, x: torch.Tensor, y: torch.Tensor) -> float:
    return ((model(x) > 0).float() == y).float().mean().item()


def evolve(
    args: argparse.Namespace, seed: int, data: tuple[torch.Tensor, ...]
) -> tuple[float, float]:
    """Validation accuracy of the best member and wall seconds."""
    x_train, y_train, x_val, y_val = data
    torch.manual_seed(seed)
    model = MLP(x_train.shape[1], hidden=args.hidden)
    optimizer = Genetic(
        model.parameters(),
        population=args.population,
        elite=args.elite,
        tournament=args.tournament,
        crossover=args.crossover,
        blend_alpha=args.blend_alpha,
        mutation_std=args.mutation_std,
        mutation_decay=args.mutation_decay,
        mutation_rate=args.mutation_rate,
        seed=seed,
    )
    batches = torch.Generator().manual_seed(seed)
    batch: tuple[torch.Tensor, torch.Tensor] = (x_train, y_train)

    def closure() -> torch.Tensor:
        return loss_of(model(batch[0]), batch[1], args.loss)

    start = time.perf_counter()
    generation = 0
    while generation < args.generations and time.perf_counter() - start < args.time_limit:
        if args.batch_size < len(y_train):
            rows = torch.randint(len(y_train), (args.batch_size,), generator=batches)
            batch = (x_train[rows], y_train[rows])
        with torch.no_grad():
            best = optimizer.step(closure)
        generation += 1
        if args.report_every and generation % args.report_every == 0:
            print(
                f"  seed {seed} gen {generation:5d} batch loss {best:.4f} "
                f"train acc {accuracy(model, x_train, y_train):.3f} "
                f"val acc {accuracy(model, x_val, y_val):.3f} "
                f"{time.perf_counter() - start:6.1f}s",
                flush=True,
            )
    wall = time.perf_counter() - start
    print(
        f"seed {seed}: {generation} generations, {optimizer.evaluations} evaluations, "
        f"{wall:.1f}s ({optimizer.evaluations / wall:.0f} evaluations/s), "
        f"train acc {accuracy(model, x_train, y_train):.4f}, "
        f"val acc {accuracy(model, x_val, y_val):.4f}",
        flush=True,
    )
    return accuracy(model, x_val, y_val), wall


def reference(args: argparse.Namespace, seed: int, data: tuple[torch.Tensor, ...]) -> None:
    """Full-batch Adam on the same network and loss: what gradients reach."""
    x_train, y_train, x_val, y_val = data
    torch.manual_seed(seed)
    model = MLP(x_train.shape[1], hidden=args.hidden)
    adam = torch.optim.Adam(model.parameters(), lr=1e-2)
    start = time.perf_counter()
    for _ in range(args.reference_steps):
        adam.zero_grad()
        loss_of(model(x_train), y_train, args.loss).backward()
        adam.step()
    print(
        f"reference Adam seed {seed}: {args.reference_steps} steps, "
        f"{time.perf_counter() - start:.1f}s, train acc {accuracy(model, x_train, y_train):.4f}, "
        f"val acc {accuracy(model, x_val, y_val):.4f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=16)
    parser.add_argument("--hidden", type=int, nargs="*", default=[16])
    parser.add_argument("--loss", choices=["bce", "mse"], default="bce")
    parser.add_argument("--population", type=int, default=32)
    parser.add_argument("--elite", type=int, default=2)
    parser.add_argument("--tournament", type=int, default=3)
    parser.add_argument("--crossover", choices=["uniform", "blend", "none"], default="uniform")
    parser.add_argument("--blend-alpha", type=float, default=0.5)
    parser.add_argument("--mutation-std", type=float, default=0.01)
    parser.add_argument("--mutation-decay", type=float, default=1.0)
    parser.add_argument("--mutation-rate", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=4800, help=">= train size: full batch")
    parser.add_argument("--generations", type=int, default=200)
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--report-every", type=int, default=0)
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--reference-steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="the box is shared")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    pixels, labels = load_photos(args.side, args.cache_dir)
    data = split(pixels, labels)
    print(
        f"{len(labels)} photos ({time.perf_counter() - start:.1f}s to load), "
        f"train {len(data[1])} / val {len(data[3])}, val dog share {data[3].mean():.3f}, "
        f"{sum(p.numel() for p in MLP(data[0].shape[1], hidden=args.hidden).parameters())} weights",
        flush=True,
    )
    print(vars(args), flush=True)
    results = [evolve(args, seed, data) for seed in args.seeds]
    accuracies = [acc for acc, _ in results]
    print(
        f"val acc mean {np.mean(accuracies):.4f} (min {min(accuracies):.4f}, max "
        f"{max(accuracies):.4f}) over seeds {args.seeds}; mean wall "
        f"{np.mean([wall for _, wall in results]):.1f}s per seed"
    )
    if args.reference:
        for seed in args.seeds:
            reference(args, seed, data)


if __name__ == "__main__":
    main()
