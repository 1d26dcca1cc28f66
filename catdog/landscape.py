r"""The loss landscape of recorded runs: the trajectory plane, the line θ₀ → θ₁, the curvature.

The real-network counterpart of `ravine.png`, for runs trained with `train.trajectory: N`
(`catdog.trajectory`), alone or as a comparison (one seed: one architecture, one start):

1. **The plane** (Li et al. 2018): PCA of every recorded weight vector of every run, centred on
   their mean m; the top two components u₁, u₂ span the plane θ = m + a·u₁ + b·u₂. The loss is
   evaluated on a grid of (a, b) and each run's path is its rows projected, (θ_t − m)·u.
   The PCA is done on the Gram matrix of the rows, read from the float16 files in column
   chunks, so no more than one chunk of every row is in memory at once.
2. **The line** (Goodfellow et al. 2015): training and validation loss at
   θ(α) = (1 − α)θ₀ + αθ₁, α ∈ [−0.25, 1.25], θ₀ the recorded start, θ₁ the run's `last.pt`.
3. **The curvature** (`catdog.hessian`) at the start, middle and end of each run: the top
   eigenvalues of the training loss's Hessian and its median |λ|, and 2/λ_max against the
   lr the run used at that point.
4. **The oscillation** of each path: the mean cosine between successive updates, in the
   plane and in the full weight space; negative means zig-zag.

Every loss here is a deterministic function of the weights: it is taken on fixed photos (a
seeded subset of the training split, the whole validation split), without augmentation or
label smoothing, dropout off. Batch norm is the catch: its output depends on the batch. Here it
normalises with the statistics *of the fixed batch itself* (all the subset's photos in one
batch), never the running averages saved in the checkpoint: those belong to the end of
training and would be wrong at θ₀ and at every other point of the plane. For a network without
batch norm the validation loss at α = 1 is exactly the last `val_loss` in `metrics.csv`.
"""

import copy
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import vector_to_parameters

from catdog.builders import build_model, prepare_data
from catdog.checkpoint import load_checkpoint
from catdog.config import Config, validate
from catdog.devices import resolve_device
from catdog.errors import ConfigError
from catdog.hessian import Curvature, hvp_function, measure_curvature
from catdog.losses import LOSSES
from catdog.plane import Plane, trajectory_plane
from catdog.runs import run_metrics
from catdog.trajectory import Recorded, read_trajectory

ALPHAS = torch.arange(-4, 21) / 16
"""α = −0.25 … 1.25 in steps of 1/16, which holds 0 and 1 exactly."""
ARCHITECTURE = (
    "data.image_size",
    "data.grayscale",
    "data.normalization",
    "model.hidden",
    "model.batch_norm",
    "model.ensemble",
)
"""What must agree for runs to share one weight space (and one meaning of each weight)."""


# --- the runs ---------------------------------------------------------------------------------


@dataclass
class RecordedRun:
    """One run folder with its trajectory, config, metrics and final weights."""

    label: str
    folder: Path
    config: Config
    trajectory: Recorded
    metrics: list[dict[str, float]]
    checkpoint: dict
    """`last.pt`: its model state holds the final weights and the fixed buffers (whitening)."""

    @property
    def final(self) -> Tensor:
        model = build_model(self.config)
        model.load_state_dict(self.checkpoint["model"])
        return torch.nn.utils.parameters_to_vector(model.parameters()).detach().float()


def run_folders(target: Path) -> list[Path]:
    """`target` itself if it is a run folder, else its run subfolders (a comparison), in order."""
    if (target / "config.yaml").is_file():
        return [target]
    if not target.is_dir():
        raise ConfigError(f"{target}: no such run or comparison folder")
    folders = sorted(p for p in target.iterdir() if (p / "config.yaml").is_file())
    if not folders:
        raise ConfigError(f"{target}: neither a run folder (config.yaml) nor a comparison of runs")
    return folders


def load_runs(target: Path) -> list[RecordedRun]:
    """The recorded runs under `target`, checked to share one architecture."""
    labels = _comparison_labels(target)
    runs = []
    for folder in run_folders(target):
        trajectory = read_trajectory(folder)  # first: a run without one is the likely mistake
        checkpoint = load_checkpoint(folder, prefer="last.pt")
        config = validate(checkpoint["config"], source=str(folder / "last.pt"))
        label = labels.get(folder.name, folder.name)
        runs.append(RecordedRun(label, folder, config, trajectory, run_metrics(folder), checkpoint))
    check_one_architecture(runs)
    return runs


def check_one_architecture(runs: Sequence[RecordedRun]) -> None:
    """Refuse, in one line, runs whose weights do not live in one space."""
    from catdog.compare import flatten
    from catdog.config import config_dict

    first = flatten(config_dict(runs[0].config))
    for run in runs[1:]:
        other = flatten(config_dict(run.config))
        differ = [key for key in ARCHITECTURE if first[key] != other[key]]
        if differ or run.trajectory.shapes != runs[0].trajectory.shapes:
            shown = ", ".join(f"{key} {first[key]} vs {other[key]}" for key in differ)
            raise ConfigError(
                f"{run.folder}: a different architecture from {runs[0].folder} "
                f"({shown or 'other parameter shapes'}); one landscape needs runs of one "
                "network, e.g. one catdog compare varying only the optimizer"
            )


def _comparison_labels(target: Path) -> dict[str, str]:
    """Run folder name → the comparison's legend label, from its summary.csv if there is one."""
    import csv

    path = target / "summary.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as file:
        return {row["folder"]: row["label"] for row in csv.DictReader(file) if "folder" in row}


# --- measuring the loss at given weights --------------------------------------------------------


@dataclass
class Probe:
    """A copy of the network that measures the loss at any weights on fixed photos."""

    model: nn.Module
    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    loss_name: str
    members: int
    steps_per_epoch: int
    chunk: int = 1024
    """Rows per forward pass; with batch norm, one pass over all rows (see the module doc)."""

    def set(self, weights: Tensor) -> None:
        device = next(self.model.parameters()).device
        vector_to_parameters(weights.to(device, torch.float32), self.model.parameters())

    @torch.no_grad()
    def loss(self, x: Tensor, y: Tensor) -> float:
        chunk = len(x) if _has_batch_norm(self.model) else self.chunk
        logits = torch.cat([self.model(x[i : i + chunk]) for i in range(0, len(x), chunk)])
        return float(LOSSES[self.loss_name](logits.float(), y))

    def train_loss(self, weights: Tensor) -> float:
        self.set(weights)
        return self.loss(self.train_x, self.train_y)

    def val_loss(self, weights: Tensor) -> float:
        self.set(weights)
        return self.loss(self.val_x, self.val_y)

    def curvature(self, weights: Tensor, **options: int) -> Curvature:
        """The Hessian of the training objective (the members' summed loss, as trained) here."""
        self.set(weights)
        params = list(self.model.parameters())
        objective = LOSSES[self.loss_name](self.model(self.train_x), self.train_y) * self.members
        hvp = hvp_function(objective, params)
        dim = sum(p.numel() for p in params)
        return measure_curvature(hvp, dim, device=params[0].device, **options)


def make_probe(run: RecordedRun, photos: int, device: torch.device) -> Probe:
    """The probe for `run`'s network and photos: `photos` training photos (seeded) and all the
    validation photos, normalised with the run's own statistics."""
    from catdog.batches import to_inputs

    config = run.config
    normalization = run.checkpoint["normalization"]
    mean = np.asarray(normalization["mean"], dtype=np.float32)
    std = np.asarray(normalization["std"], dtype=np.float32)
    data = prepare_data(config, progress=False, normalization=(mean, std))
    generator = np.random.default_rng(config.seed)
    count = min(photos, len(data.train_indices))
    subset = np.sort(generator.choice(data.train_indices, size=count, replace=False))
    val = np.sort(data.val_indices)
    pixels, labels = data.images.pixels, data.images.labels

    def inputs(rows: np.ndarray) -> tuple[Tensor, Tensor]:
        y = torch.as_tensor(labels[rows], dtype=torch.float32, device=device)
        return to_inputs(pixels[rows], mean, std, device), y

    model = build_model(config).to(device)
    model.load_state_dict(run.checkpoint["model"])
    model = _batch_statistics(model)
    batch = config.train.batch_size
    steps = 1 if batch == "full" else math.ceil(len(data.train_indices) / batch)
    return Probe(model, *inputs(subset), *inputs(val), config.loss, config.model.ensemble, steps)


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _batch_statistics(model: nn.Module) -> nn.Module:
    """An eval-mode copy (no dropout) whose batch norm layers use the batch's own statistics
    and keep none: torch does so for a layer with no running averages, in either mode."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.track_running_stats = False
            module.running_mean = None
            module.running_var = None
            module.num_batches_tracked = None
    return model


# --- 1. the loss over the plane ---------------------------------------------------------------


@dataclass
class Grid:
    a: np.ndarray
    b: np.ndarray
    losses: np.ndarray
    """losses[j, i]: the training loss at m + a[i]·u₁ + b[j]·u₂."""


def grid_losses(probe: Probe, plane: Plane, resolution: int, margin: float = 0.2) -> Grid:
    """The training loss on a resolution × resolution grid covering every path, plus `margin`."""
    points = np.concatenate(plane.paths)
    low, high = points.min(axis=0), points.max(axis=0)
    pad = margin * np.maximum(high - low, 1e-12)
    a = np.linspace(low[0] - pad[0], high[0] + pad[0], resolution)
    b = np.linspace(low[1] - pad[1], high[1] + pad[1], resolution)
    losses = np.empty((resolution, resolution))
    for j, bj in enumerate(b):
        for i, ai in enumerate(a):
            weights = plane.origin + ai * plane.directions[0] + bj * plane.directions[1]
            losses[j, i] = probe.train_loss(weights)
    return Grid(a, b, losses)


# --- 2. the line --------------------------------------------------------------------------------


@dataclass
class Line:
    alphas: np.ndarray
    train: np.ndarray
    val: np.ndarray


def interpolate(probe: Probe, start: Tensor, end: Tensor, alphas: Tensor = ALPHAS) -> Line:
    """Training and validation loss at θ(α) = (1 − α)·start + α·end."""
    train, val = [], []
    for alpha in alphas.tolist():
        weights = (1 - alpha) * start + alpha * end
        train.append(probe.train_loss(weights))
        val.append(probe.val_loss(weights))
    return Line(alphas.numpy(), np.asarray(train), np.asarray(val))


# --- 3. the curvature ---------------------------------------------------------------------------


@dataclass
class Point:
    """One measured point of a run: where, what lr the run used there, the curvature."""

    name: str
    step: int
    lr: float | None
    curvature: Curvature


def run_points(run: RecordedRun) -> list[tuple[str, int, Tensor]]:
    """(name, step, weights) at the start, middle and end of the run's trajectory."""
    trajectory = run.trajectory
    middle = len(trajectory) // 2
    return [
        ("start", int(trajectory.steps[0]), trajectory.start),
        ("middle", int(trajectory.steps[middle]), trajectory.weights(middle)),
        ("end", int(trajectory.steps[-1]), run.final),
    ]


def lr_at(run: RecordedRun, step: int, steps_per_epoch: int) -> float | None:
    """The lr `metrics.csv` records for the epoch holding `step`; None without an lr."""
    if "lr" not in run.config.optimizer.hyperparameters or not run.metrics:
        return None
    epoch = min(max(math.ceil(step / steps_per_epoch), 1), len(run.metrics))
    return run.metrics[epoch - 1]["lr"]


def curvature_points(
    runs: Sequence[RecordedRun], probe: Probe, options: dict[str, int]
) -> list[list[Point]]:
    """Per run, its three `Point`s; runs that share θ₀ (one seed) share its measurement."""
    measured: dict[str, Curvature] = {}
    result = []
    for run in runs:
        points = []
        for name, step, weights in run_points(run):
            key = hashlib.sha1(weights.numpy().tobytes()).hexdigest()
            if key not in measured:
                measured[key] = probe.curvature(weights, **options)
            lr = lr_at(run, step, probe.steps_per_epoch)
            points.append(Point(name, step, lr, measured[key]))
        result.append(points)
    return result


# --- all of it --------------------------------------------------------------------------------


@dataclass
class Landscape:
    runs: list[RecordedRun]
    plane: Plane
    grid: Grid
    lines: list[Line]
    points: list[list[Point]]
    seconds: dict[str, float] = field(default_factory=dict)


def measure_landscape(
    target: Path,
    photos: int = 256,
    resolution: int = 15,
    device: str | None = None,
    top: int = 3,
    lanczos_steps: int = 20,
    probes: int = 2,
    say: Callable[[str], None] = print,
) -> Landscape:
    """Everything `catdog landscape` draws, for the run or comparison folder `target`."""
    seconds: dict[str, float] = {}
    clock, cpu = time.perf_counter(), time.process_time()

    def lap(part: str) -> None:
        # Wall and CPU seconds: on a machine shared with other jobs the two part ways.
        nonlocal clock, cpu
        now, cpu_now = time.perf_counter(), time.process_time()
        seconds[part] = now - clock
        say(f"  {part}: {seconds[part]:.1f}s ({cpu_now - cpu:.1f}s of CPU)")
        clock, cpu = now, cpu_now

    runs = load_runs(target)
    probe = make_probe(runs[0], photos, resolve_device(device or runs[0].config.device))
    lap(f"{len(runs)} runs read, {len(probe.train_y)} + {len(probe.val_y)} photos ready")
    plane = trajectory_plane([run.trajectory for run in runs])
    lap(f"PCA of {sum(len(run.trajectory) for run in runs)} rows")
    grid = grid_losses(probe, plane, resolution)
    lap(f"loss on a {resolution}×{resolution} grid")
    lines = [interpolate(probe, run.trajectory.start, run.final) for run in runs]
    lap(f"{len(ALPHAS)} points of the line θ₀→θ₁ per run")
    options = {"k": top, "steps": lanczos_steps, "probes": probes}
    points = curvature_points(runs, probe, options)
    lap("top eigenvalues at start, middle and end")
    return Landscape(runs, plane, grid, lines, points, seconds)
