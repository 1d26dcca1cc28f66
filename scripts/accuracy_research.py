"""Lab notebook: find a fully connected recipe that reaches 72% on held-out cat/dog photos.

Not product code. Decodes the 6,000 photos once per (size, colour) into a uint8 .npy cache,
holds out a stratified 20% validation split (fixed split seed 0), and trains M independent
MLPs side by side as one batched network (weights of shape (M, in, out), `torch.baddbmm`).
Each member has its own initialisation, batch order, dropout masks and augmentation draws,
so the members are M training seeds; their averaged P(dog) is the ensemble of M.

Every run appends one JSON line to /tmp/acc-cache/results.jsonl and prints a summary:
per-member final validation accuracy (mean ± spread), the ensemble's, with and without TTA
(mirror averaging), the learning curve, and the training wall time (evaluation excluded).

    timeout 600 python scripts/accuracy_research.py --tag base --size 32 --epochs 30
"""

import argparse
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

PHOTOS = Path(__file__).resolve().parent.parent.parent / "shared/data/dogs-vs-cats/train"
CACHE = Path(os.environ.get("CATDOG_RESEARCH_CACHE", "/tmp/acc-cache"))
SPLIT_SEED = 0
VAL_FRACTION = 0.2


# ---------------------------------------------------------------- data


def decode(size: int, colour: str, fit: str = "squash") -> tuple[np.ndarray, np.ndarray]:
    """All photos as uint8 (N, C, S, S): squashed to S x S, or (`fit="crop"`) the centred
    square of side min(width, height) resized to S x S."""
    suffix = "" if fit == "squash" else f"-{fit}"
    path = CACHE / f"photos-{size}-{colour}{suffix}.npz"
    if path.exists():
        saved = np.load(path)
        return saved["x"], saved["y"]
    names = sorted(os.listdir(PHOTOS))
    mode = "RGB" if colour == "rgb" else "L"
    images, labels = [], []
    for name in names:
        with Image.open(PHOTOS / name) as image:
            image.draft(mode, (size, size))  # JPEG DCT downscale to ≥ size: fast decode
            image = image.convert(mode)
            box = None
            if fit == "crop":
                side = min(image.size)
                left, top = (image.width - side) // 2, (image.height - side) // 2
                box = (left, top, left + side, top + side)
            pixels = image.resize((size, size), Image.Resampling.BILINEAR, box=box)
        array = np.asarray(pixels, dtype=np.uint8)
        images.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
        labels.append(1 if name.startswith("dog") else 0)
    x, y = np.stack(images), np.array(labels, dtype=np.int64)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x, y=y)
    return x, y


def stratified_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of train and validation; 20% of each class held out, fixed seed."""
    rng = np.random.default_rng(SPLIT_SEED)
    train, val = [], []
    for label in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = round(len(members) * VAL_FRACTION)
        val.append(members[:cut])
        train.append(members[cut:])
    return np.concatenate(train), np.concatenate(val)


class Normaliser:
    """`channel`: (x - mean_c)/std_c with train-split statistics per channel.
    `image`: each photo standardised by its own mean and std over all its values.
    `image_channel`: each photo standardised per channel by its own statistics.
    `pixel`: each input feature standardised by its train-split mean and std.
    `zca`: `channel`, then ZCA whitening x ← x U diag(1/√(λ + eps)) Uᵀ from the eigenpairs
    (λ, U) of the train split's feature covariance (Coates & Ng; Lin et al. 2015)."""

    def __init__(self, kind: str, train: torch.Tensor, eps: float = 0.1) -> None:
        self.kind = kind
        if kind == "zca":
            self.mean = train.mean(dim=(0, 2, 3), keepdim=True)
            self.std = train.std(dim=(0, 2, 3), keepdim=True)
            flat = ((train - self.mean) / self.std).flatten(1).double()
            flat = flat - flat.mean(0)
            eigenvalues, vectors = torch.linalg.eigh(flat.T @ flat / len(flat))
            scale = (eigenvalues.clamp_min(0) + eps).rsqrt()
            self.whiten = ((vectors * scale) @ vectors.T).float()
        if kind == "channel":
            self.mean = train.mean(dim=(0, 2, 3), keepdim=True)
            self.std = train.std(dim=(0, 2, 3), keepdim=True)
        elif kind == "pixel":
            self.mean = train.mean(dim=0, keepdim=True)
            self.std = train.std(dim=0, keepdim=True)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "zca":
            flat = ((x - self.mean) / self.std).flatten(1) @ self.whiten
            return flat.reshape(x.shape)
        if self.kind in ("channel", "pixel"):
            return (x - self.mean) / self.std
        dims = (1, 2, 3) if self.kind == "image" else (2, 3)
        mean = x.mean(dim=dims, keepdim=True)
        std = x.std(dim=dims, keepdim=True).clamp_min(1e-3)
        return (x - mean) / std


def augment(x: torch.Tensor, args: argparse.Namespace, gen: torch.Generator) -> torch.Tensor:
    """Random flip, shift, resized crop (one affine resample) and brightness/contrast, on [0,1].

    The affine map sends output coordinates u ∈ [-1,1]² to input sx·u + t: a scale s < 1
    zooms into a crop of side s (random resized crop, aspect ratio r: sx = s√r, sy = s/√r);
    t is a shift, kept inside the photo for crops, whole pixels for `--shift`.
    """
    n, _, size, _ = x.shape
    needs_resample = args.hflip or args.shift > 0 or args.crop_scale < 1
    if needs_resample:
        area = torch.empty(n).uniform_(args.crop_scale, 1.0, generator=gen)
        log_ratio = torch.empty(n).uniform_(
            -math.log(args.crop_ratio), math.log(args.crop_ratio), generator=gen
        )
        ratio = log_ratio.exp()
        sx = (area * ratio).sqrt().clamp(max=1.0)
        sy = (area / ratio).sqrt().clamp(max=1.0)
        tx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sx)
        ty = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sy)
        if args.shift > 0:
            pixels = torch.randint(-args.shift, args.shift + 1, (2, n), generator=gen).float()
            tx = tx + pixels[0] * 2 / size
            ty = ty + pixels[1] * 2 / size
        flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if args.hflip else 1.0
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = sx * flip
        theta[:, 0, 2] = tx
        theta[:, 1, 1] = sy
        theta[:, 1, 2] = ty
        theta = theta.to(x.device)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode=args.pad, align_corners=False)
    if args.brightness > 0 or args.contrast > 0:
        b = torch.empty(n, 1, 1, 1).uniform_(-args.brightness, args.brightness, generator=gen)
        c = torch.empty(n, 1, 1, 1).uniform_(1 - args.contrast, 1 + args.contrast, generator=gen)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * c.to(x.device) + mean + b.to(x.device)).clamp(0, 1)
    return x


# ---------------------------------------------------------------- model


class BatchedMLP(torch.nn.Module):
    """M independent MLPs `D → hidden… → 1` evaluated together: h ← ReLU(BN(h W_l + b_l)).

    x has shape (M, B, D); each W_l has shape (M, in, out). Batch norm (when on) normalises
    each member's pre-activations over that member's batch, with running statistics for eval.
    """

    def __init__(
        self, members: int, sizes: list[int], args: argparse.Namespace, gen: torch.Generator
    ) -> None:
        super().__init__()
        self.args = args
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        self.gammas = torch.nn.ParameterList()
        self.betas = torch.nn.ParameterList()
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            bound = 1 / math.sqrt(fan_in)  # nn.Linear's default initialisation
            if args.init == "he" and i < len(sizes) - 2:
                bound = math.sqrt(6 / fan_in)
            w = torch.empty(members, fan_in, fan_out).uniform_(-bound, bound, generator=gen)
            b = torch.empty(members, 1, fan_out).uniform_(-bound, bound, generator=gen)
            self.weights.append(torch.nn.Parameter(w))
            self.biases.append(torch.nn.Parameter(b))
            if args.bn and i < len(sizes) - 2:
                self.gammas.append(torch.nn.Parameter(torch.ones(members, 1, fan_out)))
                self.betas.append(torch.nn.Parameter(torch.zeros(members, 1, fan_out)))
                self.register_buffer(f"mean{i}", torch.zeros(members, 1, fan_out))
                self.register_buffer(f"var{i}", torch.ones(members, 1, fan_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        args = self.args
        x = F.dropout(x, args.input_dropout, self.training)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i == last:
                break
            if args.bn:
                x = self.batch_norm(i, x)
            x = F.relu(x)
            x = F.dropout(x, args.dropout, self.training)
        return x.squeeze(-1)

    def batch_norm(self, i: int, x: torch.Tensor) -> torch.Tensor:
        running_mean, running_var = getattr(self, f"mean{i}"), getattr(self, f"var{i}")
        if self.training:
            mean, var = x.mean(dim=1, keepdim=True), x.var(dim=1, keepdim=True, unbiased=False)
            with torch.no_grad():
                running_mean.lerp_(mean, 0.1)
                running_var.lerp_(var * x.shape[1] / (x.shape[1] - 1), 0.1)
        else:
            mean, var = running_mean, running_var
        return (x - mean) / (var + 1e-5).sqrt() * self.gammas[i] + self.betas[i]


# ---------------------------------------------------------------- training


def learning_rate(step: int, total: int, args: argparse.Namespace) -> float:
    """Linear warm-up over `warmup` of the steps, then cosine to 0, step decay, or constant."""
    warm = int(args.warmup * total)
    if step < warm:
        return args.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    if args.schedule == "cosine":
        return args.lr * 0.5 * (1 + math.cos(math.pi * progress))
    if args.schedule == "step":
        return args.lr * 0.1 ** int(progress * 3)  # ÷10 at 1/3 and 2/3 of the run
    return args.lr


def loss_fn(logits: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> torch.Tensor:
    """BCE (or MSE on the sigmoid) against targets smoothed to ε/2 and 1 - ε/2."""
    target = y * (1 - args.smoothing) + args.smoothing / 2
    if args.loss == "mse":
        return F.mse_loss(torch.sigmoid(logits), target)
    return F.binary_cross_entropy_with_logits(logits, target)


@torch.no_grad()
def probabilities(
    model: BatchedMLP, x: torch.Tensor, normalise: Normaliser, tta: bool
) -> torch.Tensor:
    """P(dog) of each member for each photo, shape (M, N); with TTA, averaged with the mirror."""
    model.eval()
    members = len(model.weights[0])
    views = [x, x.flip(-1)] if tta else [x]
    p = torch.stack(
        [torch.sigmoid(model(normalise(v).flatten(1).expand(members, -1, -1))) for v in views]
    ).mean(0)
    model.train()
    return p


def accuracies(p: torch.Tensor, y: torch.Tensor) -> tuple[list[float], float]:
    members = ((p > 0.5).long() == y).float().mean(1).tolist()
    ensemble = ((p.mean(0) > 0.5).long() == y).float().mean().item()
    return members, ensemble


def mixup(
    x: torch.Tensor, y: torch.Tensor, alpha: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend each photo (and its label) with another of the same member's batch, λ ~ Beta(α, α)."""
    members, batch = y.shape
    lam = torch.distributions.Beta(alpha, alpha).sample((members, batch)).to(x.device)
    partner = torch.argsort(torch.rand(members, batch, generator=gen), dim=1).to(x.device)
    x_partner = torch.gather(x, 1, partner[..., None].expand_as(x))
    y_partner = torch.gather(y, 1, partner)
    return lam[..., None] * x + (1 - lam[..., None]) * x_partner, lam * y + (1 - lam) * y_partner


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x_all, y_all = decode(args.size, args.colour, args.fit)
    train_idx, val_idx = stratified_split(y_all)
    if args.train_fraction < 1:  # learning curve: a stratified-enough random part of train
        keep = np.random.default_rng(1).permutation(len(train_idx))
        train_idx = train_idx[np.sort(keep[: round(len(train_idx) * args.train_fraction)])]
    x = (torch.from_numpy(x_all).float() / 255).to(device)
    y = torch.from_numpy(y_all).float().to(device)
    x_train, y_train, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
    normalise = Normaliser(args.norm, x_train, args.zca_eps)

    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)  # dropout masks
    members = args.members
    hidden = [int(h) for h in args.hidden.split(",") if h]
    features = x_train[0].numel()
    model = BatchedMLP(members, [features, *hidden, 1], args, gen).to(device)
    decay = [*model.weights]
    no_decay = [*model.biases, *model.gammas, *model.betas]
    groups = [{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}]
    if args.opt == "adamw":
        opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, args.beta2))
    elif args.opt == "adam":  # L2 added to the gradient, as our own Adam would do
        opt = torch.optim.Adam(groups, lr=args.lr, betas=(0.9, args.beta2))
    else:
        opt = torch.optim.SGD(groups, lr=args.lr, momentum=0.9, nesterov=True)

    n = len(x_train)
    steps_per_epoch = n // args.batch
    total = steps_per_epoch * args.epochs
    curve, step, train_seconds = [], 0, 0.0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        order = torch.argsort(torch.rand(members, n, generator=gen), dim=1).to(device)
        if args.shared_batches:  # every member the same batches (as the product's ensemble)
            order = order[:1].expand(members, -1)
        for k in range(steps_per_epoch):
            idx = order[:, k * args.batch : (k + 1) * args.batch]
            if args.shared_batches:  # one augmentation and one mixup draw for all members
                xb = normalise(augment(x_train[idx[0]], args, gen)).reshape(1, args.batch, -1)
                yb = y_train[idx[:1]]
                if args.mixup > 0:
                    xb, yb = mixup(xb, yb, args.mixup, gen)
                xb, yb = xb.expand(members, -1, -1), yb.expand(members, -1)
            else:
                xb = augment(x_train[idx.flatten()], args, gen)
                xb = normalise(xb).reshape(members, args.batch, -1)
                yb = y_train[idx]
                if args.mixup > 0:
                    xb, yb = mixup(xb, yb, args.mixup, gen)
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, total, args)
            # Sum over members: each member's gradient is that of its own mean loss.
            loss = members * loss_fn(model(xb), yb, args)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        train_seconds += time.perf_counter() - start
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            member_acc, ens_acc = accuracies(probabilities(model, x_val, normalise, False), y_val)
            train_acc, _ = accuracies(
                probabilities(model, x_train[:960], normalise, False), y_train[:960]
            )
            curve.append(
                {
                    "epoch": epoch,
                    "val": round(float(np.mean(member_acc)), 4),
                    "ens": round(ens_acc, 4),
                    "train": round(float(np.mean(train_acc)), 4),
                    "loss": round(loss.item() / members, 4),
                    "s": round(train_seconds, 1),
                }
            )
            print(json.dumps(curve[-1]), flush=True)

    member_acc, ens_acc = accuracies(probabilities(model, x_val, normalise, False), y_val)
    member_tta, ens_tta = accuracies(probabilities(model, x_val, normalise, True), y_val)
    result = {
        "tag": args.tag,
        "argv": " ".join(sys.argv[1:]),
        "members": members,
        "val_mean": round(float(np.mean(member_acc)), 4),
        "val_std": round(float(np.std(member_acc, ddof=1)) if members > 1 else 0.0, 4),
        "val_members": [round(a, 4) for a in member_acc],
        "tta_mean": round(float(np.mean(member_tta)), 4),
        "tta_std": round(float(np.std(member_tta, ddof=1)) if members > 1 else 0.0, 4),
        "ens": round(ens_acc, 4),
        "ens_tta": round(ens_tta, 4),
        "best_epoch_val": max(curve, key=lambda c: c["val"]),
        "train_seconds": round(train_seconds, 1),
        "threads": torch.get_num_threads(),
        "device": args.device,
        "curve": curve,
    }
    with open(args.results or CACHE / "results.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    summary = {k: v for k, v in result.items() if k not in ("curve", "argv")}
    print(json.dumps(summary), flush=True)
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tag", default="run")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--colour", choices=["rgb", "gray"], default="rgb")
    p.add_argument(
        "--norm", choices=["channel", "image", "image_channel", "pixel", "zca"], default="channel"
    )
    p.add_argument("--zca-eps", type=float, default=0.1, help="added to each eigenvalue")
    p.add_argument("--fit", choices=["squash", "crop"], default="squash")
    p.add_argument("--shared-batches", action="store_true", help="all members see the same batches")
    p.add_argument("--hidden", default="1024,256")
    p.add_argument("--init", choices=["torch", "he"], default="torch")
    p.add_argument("--bn", action="store_true")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--input-dropout", type=float, default=0.0)
    p.add_argument("--opt", choices=["adamw", "adam", "sgd"], default="adamw")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--wd", type=float, default=0.0)
    p.add_argument("--schedule", choices=["constant", "cosine", "step"], default="constant")
    p.add_argument("--warmup", type=float, default=0.0, help="fraction of all steps")
    p.add_argument("--loss", choices=["bce", "mse"], default="bce")
    p.add_argument("--smoothing", type=float, default=0.0)
    p.add_argument("--hflip", action="store_true")
    p.add_argument("--shift", type=int, default=0, help="max whole-pixel shift")
    p.add_argument("--pad", choices=["zeros", "border", "reflection"], default="zeros")
    p.add_argument("--crop-scale", type=float, default=1.0, help="min area of a resized crop")
    p.add_argument("--crop-ratio", type=float, default=1.0, help="max aspect ratio of a crop")
    p.add_argument("--brightness", type=float, default=0.0)
    p.add_argument("--contrast", type=float, default=0.0)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--mixup", type=float, default=0.0, help="Beta(α, α) of mixup; 0 = off")
    p.add_argument("--train-fraction", type=float, default=1.0, help="learning-curve subset")
    p.add_argument("--results", default="", help="JSON lines file (default: cache folder)")
    return p.parse_args(argv)


if __name__ == "__main__":
    run(parse())
