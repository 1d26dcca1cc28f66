"""How hard is the demo set? Generate it, train the demo recipe on it, then probe for shortcuts.

    python scripts/demo_difficulty.py --per-class 1000 --epochs 12

Draws the demo photos (`catdog.synthetic.make_demo_data`) into a scratch folder and prints the
time that took; then trains configs/demo.yaml on them through the product
(`catdog.experiment.run`: the cached decode, the seed's split, our momentum; one line per
epoch), and finally fits logistic regressions that see only a shortcut (photo size and file
size; mean colour), on the same split, which should stay near chance. A logistic regression is
catdog's MLP with no hidden layer, trained full batch with our classic momentum and the BCE
loss. `--data DIR` runs the same on any folder in Kaggle's layout, e.g. the real photos;
`--set KEY=VALUE` changes the recipe as `catdog train --set` does.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from catdog.builders import prepare_data
from catdog.config import Config, load_config
from catdog.errors import ConfigError, DataError
from catdog.experiment import run
from catdog.losses import LOSSES
from catdog.model import MLP
from catdog.optim import build_optimizer, step
from catdog.synthetic import make_demo_data

DEMO = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


def shortcut_features(
    config: Config,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Features that give the label away without looking at the animal, and the run's split."""
    data = prepare_data(config, progress=False)
    paths = data.images.paths
    sizes = []
    for path in paths:
        with Image.open(path) as photo:  # the header only: no pixels are decoded here
            sizes.append([photo.width, photo.height, path.stat().st_size])
    mean_colour = data.images.pixels.mean(axis=(2, 3)) / 255.0
    features = {"size + file size": np.array(sizes, dtype=np.float32), "mean colour": mean_colour}
    return features, data.train_indices, data.val_indices, data.images.labels


def probe(
    features: np.ndarray, labels: np.ndarray, train: np.ndarray, val: np.ndarray, steps: int
) -> float:
    """Validation accuracy of a logistic regression on `features`, z-scored on the train rows."""
    mean, std = features[train].mean(axis=0), features[train].std(axis=0) + 1e-8
    x = torch.from_numpy(((features - mean) / std).astype(np.float32))
    y = torch.from_numpy(labels.astype(np.float32))
    torch.manual_seed(0)
    model = MLP(x.shape[1], hidden=())
    optimizer = build_optimizer("momentum", model.parameters(), lr=0.05, formulation="classic")
    loss_fn = LOSSES["bce"]

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[train]), y[train])
        loss.backward()
        return loss

    for _ in range(steps):
        step(optimizer, closure)
    with torch.no_grad():
        return (model.probability(x[val]).ge(0.5).float() == y[val]).float().mean().item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="of the demo photos and of the run")
    parser.add_argument("--data", type=Path, help="train on this folder instead of a demo set")
    parser.add_argument("--config", "-c", type=Path, default=DEMO)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument(
        "--set", "-s", action="append", default=[], help="override, as catdog train --set"
    )
    parser.add_argument("--probe-steps", type=int, default=300)
    args = parser.parse_args()
    print(f"load average (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    with tempfile.TemporaryDirectory() as scratch:
        if args.data is None:
            root = Path(scratch) / "photos"
            start = time.perf_counter()
            paths = make_demo_data(root, args.per_class, args.seed, progress=False)
            print(f"generated {len(paths)} photos in {time.perf_counter() - start:.1f} s")
            where = [f"data.root={root}", f"data.cache_dir={scratch}/cache"]
        else:
            where = [f"data.root={args.data}"]
        overrides = [
            *where,
            f"seed={args.seed}",
            f"train.epochs={args.epochs}",
            f"output.dir={scratch}/runs",
            "output.name=demo",
            "train.progress=false",
            *args.set,
        ]
        try:
            config = load_config(args.config, overrides)
            summary = run(config, label="demo")
            features, train, val, labels = shortcut_features(config)
        except (ConfigError, DataError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    final = summary.final.get("val_accuracy", float("nan"))
    print(
        f"validation accuracy {final:.3f} after {summary.epochs} epochs "
        f"(best {summary.best_accuracy:.3f} at epoch {summary.best_epoch}), "
        f"{summary.seconds:.1f} s training"
    )
    dogs = labels[val].mean()
    print(
        f"validation is {dogs:.3f} dogs: a probe that learns nothing scores {dogs:.3f} or "
        f"{1 - dogs:.3f}"
    )
    for name, values in features.items():
        score = probe(values, labels, train, val, args.probe_steps)
        print(f"shortcut {name}: logistic regression validation accuracy {score:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
