"""The compiled step: no recompilation over a run, state_dicts that cross paths, the `auto` rule,
and the eager fallback, with one warning, where no C++ compiler can be found."""

import copy
import io
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters

from catdog.model import MLP
from catdog.optim import build_optimizer, step
from catdog.optim._compile import AUTO_MIN_WEIGHTS, wants_compile
from tests.optim_helpers import make_problem, small_problem_settings  # noqa: F401

REPO = Path(__file__).resolve().parents[1]

# Every functional step, with bias correction where the optimizer has it.
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("sgd", {"lr": 0.1, "weight_decay": 1e-3}),
    "momentum-ema-corrected": ("momentum", {"lr": 0.1, "bias_correction": True}),
    "momentum-classic-corrected": (
        "momentum",
        {"lr": 0.02, "formulation": "classic", "bias_correction": True},
    ),
    "nesterov": ("nesterov", {"lr": 0.02, "weight_decay": 1e-3}),
    "nesterov-lookahead": ("nesterov", {"lr": 0.02, "lookahead": True}),
    "rmsprop": ("rmsprop", {"lr": 0.01}),
    "adam": ("adam", {"lr": 0.01, "weight_decay": 1e-3}),
}


def run_steps(
    optimizer: Any, model: MLP, x: torch.Tensor, y: torch.Tensor, steps: int, base_lr: float
) -> None:
    """`steps` steps with the lr on a schedule: a new value every step, as a run's cosine gives."""
    for t in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = base_lr * (1 - t / (2 * steps))

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = F.binary_cross_entropy_with_logits(model(x), y)
            loss.backward()
            return loss

        step(optimizer, closure)


@pytest.mark.slow
@pytest.mark.parametrize("run", list(RUNS))
def test_no_recompilation_over_a_hundred_scheduled_steps(run: str) -> None:
    name, hyperparameters = RUNS[run]
    model, x, y = make_problem("cpu", torch.float32)
    optimizer = build_optimizer(name, model.parameters(), compile=True, **hyperparameters)
    torch._dynamo.reset()  # this run's own graphs, however many earlier tests compiled
    run_steps(optimizer, model, x, y, 1, hyperparameters["lr"])
    compiled_first = counters["frames"]["ok"]
    assert optimizer._compiled is True
    assert compiled_first >= 1  # the first step compiled the functional step
    run_steps(optimizer, model, x, y, 100, hyperparameters["lr"])
    assert counters["frames"]["ok"] == compiled_first, "a later step recompiled"
    assert all(int(state.get("step", 101)) == 101 for state in optimizer.state.values())


CROSSING = ["sgd", "momentum-classic-corrected", "nesterov-lookahead", "rmsprop", "adam"]


@pytest.mark.slow
@pytest.mark.parametrize("run", CROSSING)
@pytest.mark.parametrize("saved_compiled", [False, True], ids=["eager-to-compiled", "back"])
def test_a_state_dict_saved_on_one_path_continues_on_the_other(
    run: str, saved_compiled: bool
) -> None:
    """Save after 7 steps on one path, load into the other, take 7 more: as 14 on one path."""
    name, hyperparameters = RUNS[run]
    model, x, y = make_problem("cpu", torch.float64)
    lr = hyperparameters["lr"]
    whole_model = copy.deepcopy(model)
    whole = build_optimizer(name, whole_model.parameters(), compile=False, **hyperparameters)
    run_steps(whole, whole_model, x, y, 7, lr)
    run_steps(whole, whole_model, x, y, 7, lr)

    first = build_optimizer(name, model.parameters(), compile=saved_compiled, **hyperparameters)
    run_steps(first, model, x, y, 7, lr)
    checkpoint = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": first.state_dict()}, checkpoint)
    checkpoint.seek(0)
    saved = torch.load(checkpoint, weights_only=True)
    resumed_model = MLP(20, (16, 8)).double()
    resumed_model.load_state_dict(saved["model"])
    resumed = build_optimizer(
        name, resumed_model.parameters(), compile=not saved_compiled, **hyperparameters
    )
    resumed.load_state_dict(saved["optimizer"])
    run_steps(resumed, resumed_model, x, y, 7, lr)

    assert resumed._compiled is not saved_compiled
    for a, b in zip(resumed_model.parameters(), whole_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    for state in resumed.state.values():
        if "step" in state:
            assert state["step"].dtype == torch.float64 and state["step"].item() == 14


def test_auto_compiles_only_large_cpu_networks() -> None:
    small = [torch.zeros(AUTO_MIN_WEIGHTS - 1)]
    assert wants_compile("auto", small) is False
    assert wants_compile(False, [torch.zeros(AUTO_MIN_WEIGHTS)]) is False
    large = [torch.zeros(AUTO_MIN_WEIGHTS // 2), torch.zeros(AUTO_MIN_WEIGHTS // 2)]
    assert wants_compile("auto", large) is True  # this machine has a C++ compiler
    assert wants_compile("auto", large, pays=False) is False  # SGD: one pass eagerly already
    assert wants_compile(True, large, pays=False) is True


def test_auto_leaves_sgd_eager_and_compiles_momentum_and_adam_on_a_large_network() -> None:
    weights = [torch.nn.Parameter(torch.zeros(AUTO_MIN_WEIGHTS))]
    sgd = build_optimizer("sgd", weights, lr=0.1)
    momentum = build_optimizer("momentum", weights, lr=0.1)
    adam = build_optimizer("adam", weights, lr=0.1)
    assert sgd.compile == momentum.compile == adam.compile == "auto"
    assert type(sgd).compile_pays is False
    assert type(momentum).compile_pays is True and type(adam).compile_pays is True
    weights[0].grad = torch.ones(AUTO_MIN_WEIGHTS)
    sgd.step()
    momentum.step()
    assert sgd._compiled is False and momentum._compiled is True


def test_past_dynamos_graph_limit_a_new_optimizer_takes_the_eager_step() -> None:
    """Dynamo would run the step uncompiled with tensor scalars there (2-5x slower than fused):
    the optimizer says so once and takes the plain eager step, the same numbers as compile=False.
    """
    torch._dynamo.reset()
    try:
        with (
            torch._dynamo.config.patch(recompile_limit=2),
            warnings.catch_warnings(record=True) as said,
        ):
            warnings.simplefilter("always")
            results = []
            for size in (3, 4, 5, 6):  # shapes 3 and 4 take the 2 graphs (static, then dynamic)
                for compiled in (True, False):
                    weights = torch.nn.Parameter(torch.linspace(-1.0, 1.0, size))
                    weights.grad = torch.linspace(0.5, 2.0, size)
                    adam = build_optimizer("adam", [weights], lr=0.1, compile=compiled)
                    adam.step()
                    results.append((adam._compiled, weights.detach().clone()))
        limit_notes = [w for w in said if "its limit" in str(w.message)]
        assert [compiled for compiled, _ in results[::2]] == [True, True, False, False]
        assert len(limit_notes) == 1 and "graphs of adam in this process" in str(
            limit_notes[0].message
        )
        for (_, past_limit), (_, eager) in zip(results[4::2], results[5::2], strict=True):
            assert torch.equal(past_limit, eager)
    finally:
        torch._dynamo.reset()


def test_the_default_is_auto_and_a_validation_build_compiles_nothing() -> None:
    """Building an optimizer (as a config check does) decides nothing: the first step does."""
    optimizer = build_optimizer("adam", [torch.zeros(3, requires_grad=True)], lr=0.1)
    assert optimizer.compile == "auto"
    assert optimizer._compiled is None


FALLBACK = """
import warnings
import torch
import catdog.optim._compile as compile_module
from catdog.optim import Adam, Momentum

if {bypass_check}:
    compile_module._why_not = lambda device: None  # let torch.compile itself find no compiler
weight = torch.nn.Parameter(torch.linspace(-1, 1, {size}))
twin = torch.nn.Parameter(weight.detach().clone())
optimizers = [Adam([weight], lr=0.01, compile="auto"), Adam([twin], lr=0.01, compile=False)]
other = Momentum([torch.nn.Parameter(torch.ones({size}))], lr=0.1, compile=True)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for _ in range(3):
        for optimizer in [*optimizers, other]:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.grad = torch.cos(param.detach() * 3)
            optimizer.step()
mine = [w for w in caught if "compile" in str(w.message)]
print(len(mine), mine[0].message if mine else "")
print(torch.equal(weight, twin), optimizers[0]._compiled, other._compiled)
"""


@pytest.mark.slow
@pytest.mark.parametrize("bypass_check", [False, True], ids=["checked", "found-by-compile"])
def test_without_a_cxx_compiler_the_step_runs_eagerly_with_one_warning(
    tmp_path: Path, bypass_check: bool
) -> None:
    """No compiler on PATH or in CXX, and a fresh Inductor cache: eager, one warning, no crash.

    `found-by-compile` skips catdog's own check, so torch.compile itself meets the missing
    compiler mid-step: the step must still complete, eagerly, with the same numbers.
    """
    script = FALLBACK.format(bypass_check=bypass_check, size=AUTO_MIN_WEIGHTS)
    empty = tmp_path / "bin"
    empty.mkdir()
    environment = os.environ | {
        "PATH": str(empty),
        "CXX": str(empty / "c++"),
        "CC": str(empty / "cc"),
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    count, message = result.stdout.splitlines()[0].split(" ", 1)
    assert count == "1", result.stdout
    expected = "torch.compile failed" if bypass_check else "no working C++ compiler"
    assert expected in message
    assert "the optimizers take their eager steps" in message
    assert result.stdout.splitlines()[1] == "True False False"
