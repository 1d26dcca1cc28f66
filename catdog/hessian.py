r"""The curvature of a loss: Hessian-vector products, its top eigenvalues, its spectral density.

The Hessian H = ∇²L(θ) of a network with P weights is P × P (2.5·10¹² numbers for the
article's network), never formed. What is cheap is its product with a vector, by double
backward (Pearlmutter 1994):

.. math::
    H v = \nabla_\theta \big( \nabla_\theta L(\theta) \cdot v \big),

one more backward pass through the graph of the gradient. On such products:

- `power_iteration`: v ← Hv / ‖Hv‖ converges to the eigenvector of the largest |λ|;
- `lanczos`: m products build an orthonormal basis Q of the Krylov space span{v, Hv, …} and
  the tridiagonal T = QᵀHQ; T's eigenvalues (Ritz values) approach H's extreme eigenvalues
  first, from inside (Cauchy interlacing: the j-th largest Ritz value ≤ the j-th largest λ);
- stochastic Lanczos quadrature (Golub & Meurant; Ghorbani, Krishnan & Xiao 2019; PyHessian):
  for a random unit v, vᵀ f(H) v = Σᵢ (uᵢ·v)² f(λᵢ) ≈ Σⱼ τⱼ² f(θⱼ), θⱼ the Ritz values and
  τⱼ the first components of T's eigenvectors. So the Ritz values weighted by τⱼ² are a
  P-point spectrum squeezed to m points; averaged over a few v, a spectral density.

`median_curvature` reads the median |λ| off that density: the curvature of a typical
direction, against which λ_max says how much steeper the steepest one is. Gradient descent
with step η multiplies the component along an eigenvector by 1 − ηλ, so it is stable only
for η < 2/λ_max.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

HVP = Callable[[Tensor], Tensor]
"""A flat vector v (P,) → the flat product H v (P,)."""


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def hvp_function(loss: Tensor, params: Sequence[Tensor]) -> HVP:
    """v ↦ H v for the Hessian of `loss` (a 0-d tensor still holding its graph) in `params`.

    The gradient is taken once with its own graph (create_graph); every product is then one
    backward pass of g·v through that graph, which is kept (retain_graph) for the next one.
    """
    params = list(params)
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
    gradient = flatten(grads)

    def hvp(v: Tensor) -> Tensor:
        if v.shape != gradient.shape:
            raise ValueError(f"v has shape {tuple(v.shape)}, the weights {tuple(gradient.shape)}")
        if not gradient.requires_grad:  # the loss is linear in every weight: H = 0
            return torch.zeros_like(gradient)
        products = torch.autograd.grad(
            gradient, params, grad_outputs=v.to(gradient), retain_graph=True, allow_unused=True
        )
        return flatten(
            [torch.zeros_like(p) if h is None else h for p, h in zip(params, products, strict=True)]
        )

    return hvp


def random_unit(
    dim: int, seed: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> Tensor:
    """A random direction, uniform on the unit sphere, the same for the same seed anywhere."""
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(dim, generator=generator, dtype=torch.float64)
    return (v / v.norm()).to(dtype=dtype, device=device)


def power_iteration(
    hvp: HVP, start: Tensor, iterations: int = 100, tolerance: float = 1e-5
) -> float:
    """The eigenvalue of largest |λ| (with its sign), by v ← Hv/‖Hv‖ until the Rayleigh
    quotient vᵀHv changes by less than `tolerance` (relative) between two iterations."""
    v = start / start.norm()
    estimate = float("nan")
    for _ in range(iterations):
        product = hvp(v)
        previous, estimate = estimate, float(v @ product)
        norm = product.norm()
        if norm == 0:
            return 0.0
        v = product / norm
        if abs(estimate - previous) <= tolerance * abs(estimate):
            break
    return estimate


def lanczos(hvp: HVP, start: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """(α, β): the diagonal and off-diagonal of T = QᵀHQ after up to `steps` products.

    Fully reorthogonalised (each new vector is made orthogonal to every earlier one, twice):
    without it rounding makes Q lose orthogonality and the top eigenvalue reappear as ghost
    copies. Stops early when the Krylov space is exhausted (β ≈ 0), as it is after P steps.
    """
    limit = min(steps, len(start))
    basis = torch.empty(limit, len(start), dtype=start.dtype, device=start.device)
    basis[0] = start / start.norm()
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(limit):
        w = hvp(basis[j])
        alpha = float(basis[j] @ w)
        alphas.append(alpha)
        done = basis[: j + 1]
        for _ in range(2):
            w = w - done.T @ (done @ w)
        beta = float(w.norm())
        if j + 1 == limit or beta <= 1e-10 * max(abs(alpha), 1e-30):
            break
        betas.append(beta)
        basis[j + 1] = w / beta
    return torch.tensor(alphas, dtype=torch.float64), torch.tensor(betas, dtype=torch.float64)


def ritz(alphas: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
    """T's eigenvalues θ (ascending) and the weights τ² (first eigenvector components²)."""
    tridiagonal = torch.diag(alphas) + torch.diag(betas, 1) + torch.diag(betas, -1)
    values, vectors = torch.linalg.eigh(tridiagonal)
    return values, vectors[0] ** 2


def median_curvature(nodes: Tensor, weights: Tensor) -> float:
    """The median of |λ| under the density Σ weightⱼ δ(λ − nodeⱼ) (weights sum to 1)."""
    magnitudes, order = nodes.abs().sort()
    cumulative = weights[order].cumsum(0) / weights.sum()
    half = int(torch.searchsorted(cumulative, torch.tensor(0.5).to(cumulative)))
    return float(magnitudes[min(half, len(magnitudes) - 1)])


@dataclass
class Curvature:
    """What `measure_curvature` found at one point θ."""

    top: list[float]
    """The k largest eigenvalues of H, largest first (Lanczos' Ritz values: lower bounds)."""
    median: float
    """The median |λ| of H's spectral density (stochastic Lanczos quadrature)."""
    products: int
    """Hessian-vector products spent."""
    seconds: float

    @property
    def largest(self) -> float:
        return self.top[0]

    @property
    def stable_lr(self) -> float:
        """2/λ_max: the largest step for which plain gradient descent does not diverge here."""
        return 2.0 / self.largest if self.largest > 0 else float("inf")

    @property
    def steepness(self) -> float:
        """λ_max / median |λ|: how much steeper the steepest direction is than a typical one."""
        return self.largest / self.median if self.median > 0 else float("inf")


def measure_curvature(
    hvp: HVP,
    dim: int,
    k: int = 3,
    steps: int = 30,
    probes: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Curvature:
    """Top-k eigenvalues and the median curvature from `probes` Lanczos runs of `steps` each.

    Each run starts from its own seeded random direction, so the result is a function of the
    HVP and the seed alone. The j-th top value is the largest j-th Ritz value over the runs
    (each is a lower bound of λ_j); the density pools every run's nodes, weight 1/probes each.
    """
    if k < 1 or steps < 1 or probes < 1:
        raise ValueError(f"k={k}, steps={steps}, probes={probes}: each must be >= 1")
    started = time.perf_counter()
    tops: list[Tensor] = []
    nodes: list[Tensor] = []
    weights: list[Tensor] = []
    for probe in range(probes):
        alphas, betas = lanczos(hvp, random_unit(dim, seed + probe, dtype, device), steps)
        values, tau = ritz(alphas, betas)
        tops.append(values.flip(0)[:k])
        nodes.append(values)
        weights.append(tau / probes)
    count = min(len(top) for top in tops)
    top = torch.stack([t[:count] for t in tops]).max(dim=0).values
    return Curvature(
        top.tolist(),
        median_curvature(torch.cat(nodes), torch.cat(weights)),
        products=sum(len(n) for n in nodes),
        seconds=time.perf_counter() - started,
    )
