"""Time our optimizers' `step` against torch's foreach and fused implementations.

For each network and optimizer it prints the median step time of ours, of torch's counterpart
with `foreach=True` and with `fused=True` (SGD and Adam have one; RMSprop has none), the
ratios ours/theirs, and the step's share of a whole training iteration (zero_grad, forward,
backward and step on a batch of 64).

Ours and torch's run interleaved, in a rotating order, repeat after repeat, on identical copies
of the parameters and gradients; a ratio is the median over repeats of ours/theirs within the
repeat, so load drifts hit both sides alike. On CPU with one thread (the default) the clock is
the thread's CPU time, which a busy shared machine inflates far less than wall time; on CUDA,
or with more threads, it is wall time around synchronised steps. The "noise" line races torch's
foreach Adam against a second instance of itself: a ratio that far from 1.00 is noise.

    PYTHONPATH=. python scripts/bench_optim.py                  # CPU, 12288 and 3072 inputs
    PYTHONPATH=. python scripts/bench_optim.py --device cuda
    PYTHONPATH=. python scripts/bench_optim.py --in-features 3072 --hidden 512 128 --compile
"""

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from catdog.model import MLP
from catdog.optim import SGD, Adam, Momentum, Nesterov, RMSprop

Factory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]
Clock = Callable[[], float]
LR = 1e-3
BETA = 0.9


@dataclass
class Case:
    """One of our optimizers and the torch optimizer that computes the same (or nearest) step."""

    label: str
    ours: Callable[[list[torch.nn.Parameter], float], torch.optim.Optimizer]
    theirs: type[torch.optim.Optimizer]
    theirs_kwargs: dict[str, Any] = field(default_factory=dict)
    has_fused: bool = True


CASES = [
    Case("sgd", lambda p, wd: SGD(p, LR, wd), torch.optim.SGD),
    Case(
        "momentum ema",
        lambda p, wd: Momentum(p, LR, BETA, "ema", weight_decay=wd),
        torch.optim.SGD,
        {"momentum": BETA, "dampening": BETA},
    ),
    Case(
        "momentum ema+bc",
        lambda p, wd: Momentum(p, LR, BETA, "ema", bias_correction=True, weight_decay=wd),
        torch.optim.SGD,
        {"momentum": BETA, "dampening": BETA},
    ),
    Case(
        "momentum classic",
        lambda p, wd: Momentum(p, LR, BETA, "classic", weight_decay=wd),
        torch.optim.SGD,
        {"momentum": BETA},
    ),
    Case(
        "nesterov",
        lambda p, wd: Nesterov(p, LR, BETA, weight_decay=wd),
        torch.optim.SGD,
        {"momentum": BETA, "nesterov": True},
    ),
    Case(
        "rmsprop",
        lambda p, wd: RMSprop(p, LR, BETA, weight_decay=wd),
        torch.optim.RMSprop,
        {"alpha": BETA},
        has_fused=False,
    ),
    Case("adam", lambda p, wd: Adam(p, LR, weight_decay=wd), torch.optim.Adam),
]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parameters_with_grads(model: MLP) -> list[torch.nn.Parameter]:
    """A private copy of the model's parameters, each holding the same fixed random gradient."""
    params = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
    generator = torch.Generator(params[0].device).manual_seed(0)
    for p in params:
        p.grad = 1e-2 * torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype)
    return params


def race(
    factories: dict[str, Factory], model: MLP, repeats: int, inner: int, clock: Clock
) -> dict[str, list[float]]:
    """Seconds per step of each optimizer, one sample per repeat, in a rotating order."""
    device = next(model.parameters()).device
    optimizers = {
        name: factory(parameters_with_grads(model)) for name, factory in factories.items()
    }
    for optimizer in optimizers.values():  # creates the state, warms caches, compiles
        for _ in range(5):
            optimizer.step()
    names = list(optimizers)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            optimizer = optimizers[name]
            synchronize(device)
            start = clock()
            for _ in range(inner):
                optimizer.step()
            synchronize(device)
            samples[name].append((clock() - start) / inner)
    return samples


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """Median over repeats of ours/theirs measured side by side in the same repeat."""
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))


def step_share(
    factory: Factory, model: MLP, batch: int, repeats: int, clock: Clock
) -> tuple[float, float]:
    """Median seconds of one training iteration (zero_grad, forward, backward, step), and the
    median share of the step in it."""
    device = next(model.parameters()).device
    model = copy.deepcopy(model)
    optimizer = factory(list(model.parameters()))
    generator = torch.Generator(device).manual_seed(1)
    x = torch.randn(batch, model.in_features, generator=generator, device=device)
    y = torch.randint(0, 2, (batch,), generator=generator, device=device).float()
    iterations: list[float] = []
    shares: list[float] = []
    for repeat in range(repeats + 3):
        synchronize(device)
        start = clock()
        optimizer.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(model(x), y).backward()
        synchronize(device)
        middle = clock()
        optimizer.step()
        synchronize(device)
        end = clock()
        if repeat >= 3:  # the first iterations allocate gradients and state
            iterations.append(end - start)
            shares.append((end - middle) / (end - start))
    return statistics.median(iterations), statistics.median(shares)


def compiled(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The optimizer with its `step` compiled by torch.compile (the instance attribute wins).

    Its first steps compile: the Python int step count changing makes dynamo recompile once
    with the count symbolic; `race`'s warm-up absorbs that. The reset drops the graphs of
    earlier instances, which would otherwise use up dynamo's recompile limit.
    """
    torch._dynamo.reset()
    optimizer.step = torch.compile(optimizer.step)  # type: ignore[method-assign]
    return optimizer


def table_row(case: Case, samples: dict[str, list[float]], with_compiled: bool) -> dict[str, str]:
    """The step columns of one optimizer's row, titled."""

    def ms(name: str) -> str:
        return f"{1e3 * statistics.median(samples[name]):.3f}"

    def ratio(name: str, versus: str) -> str:
        return f"{paired_ratio(samples[name], samples[versus]):.2f}"

    row = {
        "optimizer": case.label,
        "ours ms": ms("ours"),
        "foreach ms": ms("foreach"),
        "ours/foreach": ratio("ours", "foreach"),
        "fused ms": ms("fused") if case.has_fused else "—",
        "ours/fused": ratio("ours", "fused") if case.has_fused else "no fused",
    }
    if with_compiled:
        row["compiled ms"] = ms("compiled")
        row["compiled/best"] = ratio("compiled", "fused" if case.has_fused else "foreach")
    return row


def format_row(cells: list[str]) -> str:
    """First cell left-aligned in 18 columns, the others right-aligned in 14."""
    return f"  {cells[0]:<18}" + "".join(f"{cell:>14}" for cell in cells[1:])


def bench_network(
    in_features: int, hidden: list[int], device: torch.device, args: argparse.Namespace
) -> None:
    torch.manual_seed(0)
    model = MLP(in_features, hidden).to(device)
    count = sum(p.numel() for p in model.parameters())
    shape = "→".join(str(n) for n in [in_features, *hidden, 1])
    print(f"\n{shape} ({count:,} parameters in {len(list(model.parameters()))} tensors)")

    twins: dict[str, Factory] = {
        "a": lambda p: torch.optim.Adam(p, LR, foreach=True),
        "b": lambda p: torch.optim.Adam(p, LR, foreach=True),
    }
    noise = race(twins, model, args.repeats, args.inner, args.clock)
    print(f"  noise: torch foreach Adam vs itself {paired_ratio(noise['a'], noise['b']):.2f}")

    wd = args.weight_decay
    for index, case in enumerate(CASES):
        factories: dict[str, Factory] = {
            "ours": lambda p, case=case: case.ours(p, wd),
            "foreach": lambda p, case=case: case.theirs(
                p, LR, **case.theirs_kwargs, weight_decay=wd, foreach=True
            ),
        }
        if case.has_fused:
            factories["fused"] = lambda p, case=case: case.theirs(
                p, LR, **case.theirs_kwargs, weight_decay=wd, fused=True
            )
        if args.compile:
            factories["compiled"] = lambda p, case=case: compiled(case.ours(p, wd))
        samples = race(factories, model, args.repeats, args.inner, args.clock)
        iteration, share = step_share(
            factories["ours"], model, args.batch, args.iterations, args.clock
        )

        row = table_row(case, samples, args.compile)
        row["iteration ms"] = f"{1e3 * iteration:.3f}"
        row["step share"] = f"{share:.0%}"
        if index == 0:
            print(format_row(list(row)))
        print(format_row(list(row.values())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--in-features",
        type=int,
        nargs="+",
        default=[12288, 3072],
        help="input sizes, one network each (default 12288 = 64*64*3 and 3072 = 32*32*3)",
    )
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 128])
    parser.add_argument("--batch", type=int, default=64, help="batch of the training iteration")
    parser.add_argument("--repeats", type=int, default=25, help="timed samples per optimizer")
    parser.add_argument(
        "--iterations", type=int, default=10, help="timed training iterations per optimizer"
    )
    parser.add_argument(
        "--inner", type=int, help="steps per timed sample (default 1 on CPU, 20 on CUDA)"
    )
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads (default 1: on a shared machine, OpenMP waits for a descheduled "
        "second thread swamp the timings; 0 keeps torch's default)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time our step under torch.compile, against torch's best (fused, else foreach)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.inner is None:
        args.inner = 20 if device.type == "cuda" else 1
    on_one_cpu_thread = device.type == "cpu" and torch.get_num_threads() == 1
    args.clock = time.thread_time if on_one_cpu_thread else time.perf_counter

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"torch {torch.__version__} on {where}, {torch.get_num_threads()} CPU threads, "
        f"load average {os.getloadavg()[0]:.1f}, "
        f"clock: {'thread CPU time' if on_one_cpu_thread else 'wall time'}; "
        f"lr {LR}, β {BETA}, weight decay {args.weight_decay}; "
        f"medians of {args.repeats} samples of {args.inner} steps"
    )
    print(
        "counterparts: momentum ema → SGD(momentum=β, dampening=β) (same recurrence, buffer "
        "starts at g₁); momentum classic → SGD(momentum=β); nesterov → SGD(nesterov=True); "
        "rmsprop → RMSprop(alpha=β), which has no fused version"
    )
    for in_features in args.in_features:
        bench_network(in_features, args.hidden, device, args)


if __name__ == "__main__":
    main()
