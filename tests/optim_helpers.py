"""Shared scaffolding of the optimizer proofs: devices, one thread, a small problem, a trainer."""

import copy
from collections.abc import Callable, Iterator

import pytest
import torch
import torch.nn.functional as F

from catdog.model import MLP

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here"),
        ],
    ),
]


@pytest.fixture(autouse=True)
def small_problem_settings() -> Iterator[None]:
    """One thread, and room in dynamo's cache for every compiled proof.

    These tensors are tiny: threads only add OpenMP waits, ruinous on a busy 2-core machine. The
    compiled proofs compile one functional step for many shapes and constants, and dynamo's
    default limit of 8 graphs per function would quietly run the rest uncompiled.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch._dynamo.config.patch(recompile_limit=256, accumulated_recompile_limit=4096):
        yield
    torch.set_num_threads(threads)


Factory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


def make_problem(device: str, dtype: torch.dtype) -> tuple[MLP, torch.Tensor, torch.Tensor]:
    """A small MLP and a batch of 32 random 20-feature rows with 0/1 labels."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = MLP(20, (16, 8)).to(device, dtype)
    x = torch.randn(32, 20, generator=generator).to(device, dtype)
    y = torch.randint(0, 2, (32,), generator=generator).to(device, dtype)
    return model, x, y


def train(model: MLP, x: torch.Tensor, y: torch.Tensor, factory: Factory, steps: int) -> MLP:
    """A copy of `model` after `steps` full-batch BCE steps of the optimizer `factory` builds."""
    model = copy.deepcopy(model)
    optimizer = factory(list(model.parameters()))
    for _ in range(steps):
        optimizer.zero_grad()
        F.binary_cross_entropy_with_logits(model(x), y).backward()
        optimizer.step()
    return model


PATHS = [
    pytest.param(False, id="eager"),
    # Each compiled case costs a compilation (seconds, more on a cold Inductor cache).
    pytest.param(True, id="compiled", marks=pytest.mark.slow),
]
"""The two paths of every functional step, as `compile=`: the proofs run on both."""


def path_tolerance(device: str, compiled: bool) -> float:
    """What two float32 runs of the same maths may differ by after 100 steps: nothing when both
    run torch's very kernels on the CPU; rounding where cuBLAS or Inductor's fused loop (which
    may contract a·b + c into one FMA) computes them."""
    return 0.0 if device == "cpu" and not compiled else 1e-6
