r"""The trajectory plane: PCA of recorded weight vectors, and how a path moves within it.

Li, Xu, Taylor, Studer & Goldstein (2018) plot an optimizer's path in the plane of the top two
principal components of its recorded weights; random directions in a million-dimensional space
are nearly orthogonal to the path and show nothing of it. Here the rows of every run (each its
θ₀ plus its float16 moves, `catdog.trajectory`) are centred on their common mean m, and

.. math::
    X_c = U \Sigma V^\top, \qquad u_k = V_{:,k}, \qquad (\theta_t - m)\cdot u_k = \sigma_k U_{tk},

found through the Gram matrix G = X_c X_cᵀ = U Σ² Uᵀ (rows × rows, small), accumulated from
the files in column chunks, so never more than one chunk of every row is in memory. The
share of variance the plane explains is (σ₁² + σ₂²) / Σσₖ².

The oscillation of a path is the mean cosine between successive updates dₜ = pₜ₊₁ − pₜ:
SGD zig-zagging across a ravine gives cosines near −1, momentum moving steadily near +1.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from catdog.errors import ConfigError
from catdog.trajectory import Recorded


@dataclass
class Plane:
    origin: Tensor
    """m, the mean of every recorded row, (P,)."""
    directions: Tensor
    """u₁, u₂: orthonormal rows, (2, P)."""
    explained: list[float]
    """The share of the rows' variance along u₁ and along u₂."""
    paths: list[np.ndarray]
    """Per run, its rows' coordinates (a, b) in the plane, (rows, 2)."""


def trajectory_plane(trajectories: Sequence[Recorded], chunk: int = 1 << 14) -> Plane:
    """PCA of all the trajectories' rows (each run's θ₀ + its float16 moves) through the Gram
    matrix G = XcXcᵀ: its eigenvectors vₖ give the components uₖ = Xcᵀvₖ/σₖ and the
    coordinates Xc·uₖ = σₖvₖ."""
    counts = [len(t) for t in trajectories]
    if sum(counts) < 3:
        raise ConfigError(
            f"{trajectories[0].folder}: {sum(counts)} recorded rows; a plane needs at least 3 "
            "(record more often: a smaller train.trajectory)"
        )
    dim = len(trajectories[0].start)
    gram = torch.zeros(sum(counts), sum(counts), dtype=torch.float64)
    origin = torch.zeros(dim)
    for low in range(0, dim, chunk):
        block, mean = _centred_block(trajectories, low, low + chunk)
        origin[low : low + chunk] = mean
        gram += (block @ block.T).double()
    values, vectors = torch.linalg.eigh(gram)
    values, vectors = values.flip(0).clamp_min(0), vectors.flip(1)
    sigma = values[:2].sqrt()
    components = vectors[:, :2] / sigma.clamp_min(1e-30)
    directions = torch.zeros(2, dim)
    for low in range(0, dim, chunk):
        block, _ = _centred_block(trajectories, low, low + chunk)
        directions[:, low : low + chunk] = components.T.float() @ block
    coordinates = (vectors[:, :2] * sigma).numpy()
    # Orient u₁ along the first run's travel, so its path runs left to right.
    if coordinates[counts[0] - 1, 0] < coordinates[0, 0]:
        directions[0], coordinates[:, 0] = -directions[0], -coordinates[:, 0]
    explained = (values[:2] / values.sum().clamp_min(1e-30)).tolist()
    paths = np.split(coordinates, np.cumsum(counts)[:-1])
    return Plane(origin, directions, explained, paths)


def _centred_block(trajectories: Sequence[Recorded], low: int, high: int) -> tuple[Tensor, Tensor]:
    """Columns low:high of every row minus their mean, in float32, and that mean.

    float32 halves the cost of the Gram products, the bulk of the work; the chunks' products
    are summed in float64.
    """
    rows = [
        t.start[low:high] + torch.from_numpy(np.asarray(t.deltas[:, low:high], dtype=np.float32))
        for t in trajectories
    ]
    block = torch.cat(rows)
    mean = block.double().mean(dim=0).float()
    return block - mean, mean


def successive_cosines(points: np.ndarray | Tensor) -> np.ndarray:
    """cos(dₜ, dₜ₊₁) for the updates dₜ = pₜ₊₁ − pₜ of a path of points (rows); zero
    updates are left out."""
    updates = torch.as_tensor(np.asarray(points), dtype=torch.float64).diff(dim=0)
    norms = updates.norm(dim=1)
    moving = norms > 0
    updates, norms = updates[moving], norms[moving]
    return ((updates[:-1] * updates[1:]).sum(dim=1) / (norms[:-1] * norms[1:])).numpy()


def weight_space_cosines(trajectory: Recorded) -> np.ndarray:
    """`successive_cosines` of the full recorded rows, streamed two updates at a time."""
    cosines = []
    previous = None
    for row in range(1, len(trajectory)):
        update = torch.from_numpy(
            np.asarray(trajectory.deltas[row], dtype=np.float64)
            - np.asarray(trajectory.deltas[row - 1], dtype=np.float64)
        )
        norm = float(update.norm())
        if norm == 0:
            continue
        if previous is not None:
            cosines.append(float(update @ previous[0]) / (norm * previous[1]))
        previous = (update, norm)
    return np.asarray(cosines)
