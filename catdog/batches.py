"""Mini-batches straight from the decoded uint8 array (a memmap is fine).

The network sees x = (pixels / 255 - mean) / std per channel, flattened channel-major to
C * S * S features; `to_inputs` is that map, shared by training, evaluation and prediction.
`Batches` yields one epoch of (x, y) with all randomness derived from (seed, epoch, batch):
a run resumed at batch k of an epoch gets the same batches as one that never stopped.
"""

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from catdog.config import AugmentConfig
from catdog.errors import DataError

# Rows per read when streaming over the whole array (~64 MiB at 3 x 200 x 200).
_STATS_ROWS = 512
# Separate random streams for the epoch permutation and the per-batch augmentation.
_PERMUTATION, _AUGMENTATION = 0, 1


def channel_stats(pixels: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (ddof 0) of pixels / 255 over rows `indices`.

    Counts each of the 256 grey levels per channel (exact integers), chunk by chunk so a
    memmap larger than RAM streams through, then mean = sum(v * n_v) / (255 n) and
    var = sum(v^2 * n_v) / (255^2 n) - mean^2 in float64. Returned as float32, shape (C,).
    """
    channels = pixels.shape[1]
    counts = np.zeros((channels, 256), dtype=np.int64)
    for chunk in _row_chunks(pixels, indices, "channel_stats"):
        for channel in range(channels):
            counts[channel] += np.bincount(chunk[:, channel].ravel(), minlength=256)
    levels = np.arange(256, dtype=np.float64) / 255.0
    n = counts.sum(axis=1)
    mean = counts @ levels / n
    var = np.maximum(counts @ levels**2 / n - mean**2, 0.0)
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def zca_whitening(
    pixels: np.ndarray,
    indices: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    epsilon: float,
) -> tuple[np.ndarray, np.ndarray]:
    """ZCA whitening of the normalised inputs x over rows `indices`: (μ, W) with
    x ↦ (x − μ) W decorrelating the features (Bell & Sejnowski 1997; Coates & Ng 2011).

    x is `to_inputs`' map of each row (per-channel normalised, flattened); μ its mean over the
    rows and Σ = U diag(λ) Uᵀ its covariance (ddof 0), so W = U diag(1/√(λ + ε)) Uᵀ, symmetric.
    ε keeps the near-zero-variance directions (fine, noisy detail) from being amplified without
    bound: a direction of variance λ ends with variance λ / (λ + ε). Accumulated in float64
    chunk by chunk; returned as float32, shapes (D,) and (D, D).
    """
    if epsilon <= 0:
        raise ValueError(f"zca epsilon={epsilon}: must be > 0")
    features = int(np.prod(pixels.shape[1:]))
    scale, offset = (a.double() for a in _affine(mean, std, torch.device("cpu")))
    total = torch.zeros(features, dtype=torch.float64)
    products = torch.zeros(features, features, dtype=torch.float64)
    count = 0
    for chunk in _row_chunks(pixels, indices, "zca_whitening"):
        x = (torch.from_numpy(chunk).double() * scale - offset).flatten(1)
        total += x.sum(dim=0)
        products += x.T @ x
        count += len(x)
    feature_mean = total / count
    covariance = products / count - torch.outer(feature_mean, feature_mean)
    eigenvalues, vectors = torch.linalg.eigh(covariance)
    # Round-off can leave tiny negative eigenvalues; a variance is >= 0.
    gains = (eigenvalues.clamp_min(0.0) + epsilon).rsqrt()
    matrix = (vectors * gains) @ vectors.T
    return feature_mean.float().numpy(), matrix.float().numpy()


def _row_chunks(pixels: np.ndarray, indices: np.ndarray, caller: str) -> Iterator[np.ndarray]:
    """Rows `indices` of `pixels`, read in ascending order (as a memmap likes) in chunks of
    `_STATS_ROWS`, so statistics over an array larger than RAM stream through."""
    rows = np.sort(np.asarray(indices, dtype=np.int64))
    if len(rows) == 0:
        raise DataError(f"{caller}: no rows given; the training split is empty")
    for start in range(0, len(rows), _STATS_ROWS):
        yield pixels[rows[start : start + _STATS_ROWS]]


def to_inputs(
    pixels_uint8: Tensor | np.ndarray,
    mean: Tensor | np.ndarray,
    std: Tensor | np.ndarray,
    device: torch.device | str = "cpu",
) -> Tensor:
    """uint8 (B, C, S, S) -> float32 (B, C*S*S): (x / 255 - mean_c) / std_c, channel-major.

    The uint8 batch moves to `device` first (a quarter of the bytes), then converts there.
    """
    pixels = torch.as_tensor(pixels_uint8)
    if pixels.dtype != torch.uint8:
        raise TypeError(f"to_inputs takes uint8 pixels (0..255), got {pixels.dtype}")
    pixels = pixels.to(device)
    scale, offset = _affine(mean, std, pixels.device)
    return _normalise(pixels, scale, offset)


class Batches:
    """One epoch after another of (x, y) mini-batches from rows `indices` of `pixels`.

    x: float32 (b, C*S*S) normalised as `to_inputs` does; y: float32 (b,) labels; both on
    `device`. There are ceil(len(indices) / batch_size) batches per epoch, the last one
    possibly smaller. Epoch e's order is a permutation drawn from (seed, e) alone; the
    augmentation of batch k of epoch e is drawn from (seed, e, k) alone.

    The rows of a batch come in ascending index order: a batch is a set to SGD, and
    ascending reads are the fast way through a memmap. With `world_size` > 1, global batch
    k (still `batch_size` rows) is split so that rank r takes rows r, r + world_size, ... of
    it; the ranks together see exactly the single-process batch, augmentation included.
    A rank may get fewer rows than the others (none, if the last batch is tiny).
    """

    def __init__(
        self,
        pixels: np.ndarray,
        labels: np.ndarray,
        indices: np.ndarray,
        batch_size: int,
        mean: np.ndarray | Tensor,
        std: np.ndarray | Tensor,
        *,
        device: torch.device | str = "cpu",
        shuffle: bool = True,
        seed: int = 0,
        augment: AugmentConfig | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if pixels.dtype != np.uint8 or pixels.ndim != 4:
            raise ValueError(
                f"pixels must be uint8 (N, C, S, S), got {pixels.dtype} {pixels.shape}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank}, world_size={world_size}: need 0 <= rank < world_size")
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(pixels)):
            raise ValueError(f"indices must lie in [0, {len(pixels)}) to index the pixel rows")
        if len(labels) != len(pixels):
            raise ValueError(f"{len(labels)} labels for {len(pixels)} pixel rows")
        if bool((torch.as_tensor(std) <= 0).any()):
            raise DataError(f"channel std {std}: a constant channel can't be normalised")
        self.pixels = pixels  # never copied whole: batches read only their rows
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
        self.indices = indices
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment if augment is not None and augment.active else None
        self.rank = rank
        self.world_size = world_size
        self.mean = torch.as_tensor(mean, dtype=torch.float32).to(self.device)
        self.std = torch.as_tensor(std, dtype=torch.float32).to(self.device)
        self._scale, self._offset = _affine(self.mean, self.std, self.device)
        # On a GPU with room for them, the photos stay in device memory (uint8, a quarter of
        # the float32 batches): batches are gathered there, with no host-to-device copy each.
        self._resident: Tensor | None = None
        self._resident_labels: Tensor | None = None
        if self.device.type == "cuda" and _fits_on(self.device, pixels.nbytes):
            self._resident = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device)
            self._resident_labels = self.labels.to(self.device)

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """All rows of epoch `epoch`, batch after batch (before sorting within a batch)."""
        if not self.shuffle:
            return self.indices
        generator = torch.Generator().manual_seed(_seed(self.seed, epoch, _PERMUTATION))
        return self.indices[torch.randperm(len(self.indices), generator=generator).numpy()]

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches `start`, ..., len(self) - 1 of epoch `epoch`, as (x, y) on the device."""
        if not 0 <= start <= len(self):
            raise ValueError(f"start={start}: an epoch has batches 0..{len(self) - 1}")
        order = self.order(epoch)
        for batch in range(start, len(self)):
            rows = np.sort(order[batch * self.batch_size : (batch + 1) * self.batch_size])
            positions = np.arange(len(rows))[self.rank :: self.world_size]  # this rank's rows
            if self.augment is None:
                yield self._read(rows[positions])
                continue
            # Draw for the whole global batch, then keep this rank's rows: every rank
            # agrees with the single-process run.
            seed = _seed(self.seed, epoch, _AUGMENTATION, batch)
            generator = torch.Generator().manual_seed(seed)
            draws = _draw(self.augment, len(rows), self.pixels.shape[-1], generator)
            needed = positions
            if self.augment.mixup:
                # Partners may be another rank's rows: read them too, augmented as they are
                # in the single-process batch. Each needed row is read once, in ascending order.
                partner, weight = _mixup_draws(len(rows), self.augment.mixup, generator, seed)
                needed = np.union1d(positions, partner[positions])
            pixels, y = self._rows(rows[needed])
            draws = {name: value[needed].to(self.device) for name, value in draws.items()}
            unit = _augment(pixels, self.augment, draws)
            x = ((unit - self.mean[:, None, None]) / self.std[:, None, None]).flatten(1)
            if self.augment.mixup:
                # Normalising is affine: mixing normalised inputs = normalising mixed pixels.
                own = torch.from_numpy(np.searchsorted(needed, positions)).to(self.device)
                other = np.searchsorted(needed, partner[positions])
                other = torch.from_numpy(other).to(self.device)
                lam = torch.from_numpy(weight[positions]).to(self.device)
                x = lam[:, None] * x[own] + (1.0 - lam[:, None]) * x[other]
                y = lam * y[own] + (1.0 - lam) * y[other]
            yield x, y

    def _read(self, rows: np.ndarray) -> tuple[Tensor, Tensor]:
        """(x, y) of `rows` (ascending) without augmentation."""
        pixels, y = self._rows(rows)
        return _normalise(pixels, self._scale, self._offset), y

    def _rows(self, rows: np.ndarray) -> tuple[Tensor, Tensor]:
        """uint8 pixels and labels of `rows` (ascending), on the device."""
        if self._resident is not None:
            index = torch.from_numpy(rows).to(self.device)
            return self._resident[index], self._resident_labels[index]
        pixels = torch.from_numpy(self.pixels[rows]).to(self.device)
        return pixels, self.labels[torch.from_numpy(rows)].to(self.device)


def _fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether `nbytes` take at most a quarter of the GPU's free memory (the rest: the network,
    its activations and the optimizer's state)."""
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= free // 4


def _seed(*parts: int) -> int:
    """A 63-bit seed mixed from `parts` (nearby epochs/batches get unrelated streams)."""
    state = np.random.SeedSequence([int(part) for part in parts]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _affine(
    mean: Tensor | np.ndarray, std: Tensor | np.ndarray, device: torch.device
) -> tuple[Tensor, Tensor]:
    """(scale, offset), shape (C, 1, 1), with (x / 255 - mean) / std = x * scale - offset."""
    mean = torch.as_tensor(mean, dtype=torch.float64).reshape(-1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float64).reshape(-1, 1, 1)
    scale, offset = 1.0 / (255.0 * std), mean / std
    return scale.float().to(device), offset.float().to(device)


def _normalise(pixels: Tensor, scale: Tensor, offset: Tensor) -> Tensor:
    """uint8 (B, C, S, S) -> float32 pixels * scale - offset, flattened to (B, C*S*S)."""
    if pixels.device.type == "cpu":
        # numpy runs this on one thread; torch's two-thread kernels stall for milliseconds
        # whenever other processes hold the cores (~6x slower per batch on a busy box).
        x = np.multiply(pixels.numpy(), scale.numpy(), dtype=np.float32)
        x -= offset.numpy()
        return torch.from_numpy(x).flatten(1)
    return pixels.float().mul_(scale).sub_(offset).flatten(1)


def _draw(
    augment: AugmentConfig, rows: int, size: int, generator: torch.Generator
) -> dict[str, Tensor]:
    """The random numbers for one batch, on the CPU (so every device gets the same ones)."""
    draws = {}
    if augment.hflip:
        draws["flip"] = torch.rand(rows, generator=generator) < 0.5
    if augment.shift:
        limit = min(augment.shift, size - 1)  # reflection reaches at most one image width
        draws["shift"] = torch.randint(-limit, limit + 1, (rows, 2), generator=generator)
    if augment.brightness:
        draws["brightness"] = _uniform(rows, augment.brightness, generator)
    if augment.contrast:
        draws["contrast"] = _uniform(rows, augment.contrast, generator)
    # Drawn last, so that configs without them keep the random streams they always had.
    if augment.zoom:
        draws["zoom"] = _uniform(rows, augment.zoom, generator)
    if augment.rotate:
        draws["angle"] = torch.deg2rad(
            augment.rotate * (2.0 * torch.rand(rows, generator=generator) - 1.0)
        )
    return draws


def _mixup_draws(
    rows: int, alpha: float, generator: torch.Generator, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's mixup partner (a permutation of the batch) and weight λ ~ Beta(α, α)."""
    partner = torch.randperm(rows, generator=generator).numpy()
    # torch's Beta sampler takes no generator; numpy's does, seeded from the same batch seed.
    weight = np.random.default_rng(seed).beta(alpha, alpha, size=rows).astype(np.float32)
    return partner, weight


def _uniform(rows: int, spread: float, generator: torch.Generator) -> Tensor:
    return 1.0 + spread * (2.0 * torch.rand(rows, generator=generator) - 1.0)


def _augment(pixels: Tensor, augment: AugmentConfig, draws: dict[str, Tensor]) -> Tensor:
    """Apply the drawn flips, shifts, zooms, rotations and colour changes to a (B, C, S, S)
    uint8 batch; returns it in [0, 1], as float32."""
    if "flip" in draws or "shift" in draws:
        # A permutation of each photo's pixels: moved as uint8, a quarter of the bytes.
        pixels = _flip_and_shift(pixels, draws.get("flip"), draws.get("shift"))
    unit = pixels.float() / 255.0
    if "zoom" in draws or "angle" in draws:
        unit = zoom_and_rotate(unit, draws.get("zoom"), draws.get("angle"))
    if "brightness" in draws:
        unit = (unit * draws["brightness"][:, None, None, None]).clamp(0.0, 1.0)
    if "contrast" in draws:
        grey = _grey(unit).mean(dim=(-2, -1), keepdim=True)
        factor = draws["contrast"][:, None, None, None]
        unit = (factor * unit + (1.0 - factor) * grey).clamp(0.0, 1.0)
    return unit


def _flip_and_shift(images: Tensor, flip: Tensor | None, shift: Tensor | None) -> Tensor:
    """One gather: output pixel (i, j) of image b reads input (rows[b, i], cols[b, j])."""
    batch, channels, size, _ = images.shape
    ramp = torch.arange(size, device=images.device)
    rows = ramp.expand(batch, size)
    cols = ramp.expand(batch, size)
    if shift is not None:
        rows = reflect(rows + shift[:, :1], size)
        cols = reflect(cols + shift[:, 1:], size)
    if flip is not None:
        cols = torch.where(flip[:, None], size - 1 - cols, cols)
    # Each output pixel's place in its plane, the same for every channel: a gather along the
    # flattened planes is several times faster than indexing with four broadcast index tensors.
    source = (rows[:, :, None] * size + cols[:, None, :]).flatten(1)
    planes = images.flatten(2)
    return planes.gather(2, source[:, None, :].expand(batch, channels, -1)).view(images.shape)


def zoom_and_rotate(unit: Tensor, zoom: Tensor | None, angle: Tensor | None) -> Tensor:
    """Image b scaled by zoom[b] and turned clockwise on screen by angle[b] radians, about its
    centre: output pixel p reads input R(angle) p / zoom, bilinearly, the border reflected.
    Coordinates are pixel centres (align_corners=False), so zoom 1 and angle 0 give the batch
    back, and a quarter turn is `torch.rot90(k=-1)` exactly."""
    batch = unit.shape[0]
    if batch == 0:  # a rank's share of a short last batch; affine_grid refuses it
        return unit
    zoom = torch.ones(batch, device=unit.device) if zoom is None else zoom
    angle = torch.zeros(batch, device=unit.device) if angle is None else angle
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    zero = torch.zeros_like(cos)
    # x runs right and y down (grid_sample's convention), so this rotation turns clockwise.
    theta = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
    theta = theta.to(device=unit.device, dtype=unit.dtype)
    grid = torch.nn.functional.affine_grid(theta, list(unit.shape), align_corners=False)
    return torch.nn.functional.grid_sample(
        unit, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )


def reflect(index: Tensor, size: int) -> Tensor:
    """Mirror indices in [-(size-1), 2(size-1)] into [0, size-1] (edge pixel not repeated)."""
    last = size - 1
    return last - (last - index.abs()).abs()


def _grey(unit: Tensor) -> Tensor:
    """ITU-R 601 luma of an RGB batch (a grey batch is its own luma), keeping dim 1."""
    if unit.shape[1] == 1:
        return unit
    weights = torch.tensor([0.299, 0.587, 0.114], device=unit.device, dtype=unit.dtype)
    return (unit * weights[:, None, None]).sum(dim=1, keepdim=True)
