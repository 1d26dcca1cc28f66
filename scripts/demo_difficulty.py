"""How hard is the demo set? Generate it, then train the demo recipe on it and on shortcuts.

    PYTHONPATH=. python scripts/demo_difficulty.py --per-class 1000 --epochs 12

Prints the generation time, then per epoch the train/validation accuracy of the demo recipe
(32x32 colour, per-channel normalisation from the train split, MLP 3072-512-128-1, MSE on
the sigmoid, SGD with classic momentum 0.9 as a stand-in for ours), and the validation
accuracy of logistic regressions that see only a shortcut (photo size and file size; mean
colour), which should stay near chance. `--data DIR` runs the same recipe on any folder in
Kaggle's layout, e.g. the real photos, for comparison.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from catdog.model import MLP
from catdog.synthetic import make_demo_data


def load(paths: list[Path], size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Photos as (N, 3, size, size) floats in [0, 1], labels (dog = 1), shortcut features."""
    images, labels, shortcuts = [], [], []
    for path in paths:
        with Image.open(path) as photo:
            shortcuts.append([photo.width, photo.height, path.stat().st_size])
            images.append(np.asarray(photo.convert("RGB").resize((size, size), Image.BILINEAR)))
        labels.append(float(path.name.startswith("dog.")))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return x, torch.tensor(labels), torch.tensor(shortcuts, dtype=torch.float32)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return ((model(x) > 0).float() == y).float().mean().item()


def train(
    model: torch.nn.Module,
    data: tuple[torch.Tensor, ...],
    epochs: int,
    lr: float,
    batch: int,
    loss_name: str,
    report: bool,
) -> float:
    x_train, y_train, x_val, y_val = data
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    shuffle = torch.Generator().manual_seed(0)
    for epoch in range(1, epochs + 1):
        model.train()
        for rows in torch.randperm(len(x_train), generator=shuffle).split(batch):
            logits = model(x_train[rows])
            if loss_name == "mse":
                loss = ((torch.sigmoid(logits) - y_train[rows]) ** 2).mean()
            else:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y_train[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if report:
            train_acc, val_acc = accuracy(model, x_train, y_train), accuracy(model, x_val, y_val)
            print(f"  epoch {epoch:2d}  train {train_acc:.3f}  validation {val_acc:.3f}")
    return accuracy(model, x_val, y_val)


def normalised(train: torch.Tensor, val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dims = [d for d in range(train.dim()) if d != 1]
    mean, std = train.mean(dims, keepdim=True), train.std(dims, keepdim=True)
    return (train - mean) / std, (val - mean) / std


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="train on this folder instead of a demo set")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--loss", choices=["mse", "bce"], default="mse")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"load average (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    with tempfile.TemporaryDirectory() as scratch:
        if args.data is None:
            start = time.perf_counter()
            paths = make_demo_data(Path(scratch), args.per_class, args.seed, progress=False)
            seconds = time.perf_counter() - start
            print(f"generated {len(paths)} photos in {seconds:.1f} s")
        else:
            paths = sorted(args.data.glob("*.jpg"))
            print(f"{len(paths)} photos in {args.data}")
        start = time.perf_counter()
        x, y, shortcuts = load(paths, args.size)
        print(
            f"decoded and resized to {args.size}x{args.size} in {time.perf_counter() - start:.1f} s"
        )

    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    n_val = len(x) // 5
    val, tr = order[:n_val], order[n_val:]
    x_train, x_val = normalised(x[tr], x[val])

    model = MLP(x[0].numel(), hidden=(512, 128))
    print(f"demo recipe: lr {args.lr}, momentum 0.9, batch {args.batch}, loss {args.loss}")
    start = time.perf_counter()
    data = (x_train, y[tr], x_val, y[val])
    final = train(model, data, args.epochs, args.lr, args.batch, args.loss, report=True)
    seconds = time.perf_counter() - start
    print(f"validation accuracy {final:.3f} after {args.epochs} epochs, {seconds:.1f} s training")

    dogs = y[val].mean().item()
    print(
        f"validation is {dogs:.3f} dogs: a probe that learns nothing scores {dogs:.3f} or "
        f"{1 - dogs:.3f}"
    )
    mean_colour = x.mean((2, 3))
    for name, features in [("size + file size", shortcuts), ("mean colour", mean_colour)]:
        f_train, f_val = normalised(features[tr], features[val])
        probe = torch.nn.Linear(features.shape[1], 1)
        probe_forward = torch.nn.Sequential(probe, torch.nn.Flatten(0))
        data = (f_train, y[tr], f_val, y[val])
        score = train(probe_forward, data, 30, 0.05, args.batch, "bce", report=False)
        print(f"shortcut {name}: logistic regression validation accuracy {score:.3f}")


if __name__ == "__main__":
    main()
