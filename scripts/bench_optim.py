"""Time our optimizers' `step`, eager and compiled, against torch's foreach and fused ones.

For each optimizer, at each thread count, it prints the median step time of ours eagerly
(`compile=False`), ours compiled (`compile=True`: torch.compile/Inductor), torch's counterpart
with `foreach=True` and with `fused=True` (RMSprop has none), the ratios ours/torch's best
(fused, else foreach), the compile cost (the compiled optimizer's first step, in seconds), and
the step's share of a whole training iteration (zero_grad, forward, backward and step on a batch
of 64) with `compile="auto"`, the default. Goals: compiled ≤ 1.0× fused; RMSprop ≤ 0.5× foreach.

Ours and torch's run interleaved, in a rotating order, repeat after repeat, on identical copies
of the parameters and gradients; a ratio is the median over repeats of ours/theirs within the
repeat, so load drifts hit both sides alike. On CPU with one thread the clock is the thread's
CPU time, which a busy shared machine inflates far less than wall time; on CUDA, or with more
threads, it is wall time around synchronised steps. The "noise" line races torch's foreach Adam
against a second instance of itself: a ratio that far from 1.00 is noise.

The compile cost depends on Inductor's on-disk cache (TORCHINDUCTOR_CACHE_DIR, printed): the
first run on a machine compiles (tens of seconds), later ones load what it built.

    PYTHONPATH=. python scripts/bench_optim.py                 # the default recipe's network
    PYTHONPATH=. python scripts/bench_optim.py --threads 1 2   # at 1, then 2 threads
    PYTHONPATH=. python scripts/bench_optim.py --device cuda
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


Build = Callable[[list[torch.nn.Parameter], float, Any], torch.optim.Optimizer]


@dataclass
class Case:
    """One of our optimizers and the torch optimizer that computes the same (or nearest) step."""

    label: str
    ours: Build
    theirs: type[torch.optim.Optimizer]
    theirs_kwargs: dict[str, Any] = field(default_factory=dict)
    has_fused: bool = True


CASES = [
    Case("sgd", lambda p, wd, c: SGD(p, LR, wd, compile=c), torch.optim.SGD),
    Case(
        "momentum ema",
        lambda p, wd, c: Momentum(p, LR, BETA, "ema", weight_decay=wd, compile=c),
        torch.optim.SGD,
        {"momentum": BETA, "dampening": BETA},
    ),
    Case(
        "momentum ema+bc",
        lambda p, wd, c: Momentum(p, LR, BETA, "ema", True, weight_decay=wd, compile=c),
        torch.optim.SGD,
        {"momentum": BETA, "dampening": BETA},
    ),
    Case(
        "momentum classic",
        lambda p, wd, c: Momentum(p, LR, BETA, "classic", weight_decay=wd, compile=c),
        torch.optim.SGD,
        {"momentum": BETA},
    ),
    Case(
        "momentum cl.+bc",
        lambda p, wd, c: Momentum(p, LR, BETA, "classic", True, weight_decay=wd, compile=c),
        torch.optim.SGD,
        {"momentum": BETA},
    ),
    Case(
        "nesterov",
        lambda p, wd, c: Nesterov(p, LR, BETA, weight_decay=wd, compile=c),
        torch.optim.SGD,
        {"momentum": BETA, "nesterov": True},
    ),
    Case(
        "nesterov lookahead",
        lambda p, wd, c: Nesterov(p, LR, BETA, lookahead=True, weight_decay=wd, compile=c),
        torch.optim.SGD,
        {"momentum": BETA, "nesterov": True},
    ),
    Case(
        "rmsprop",
        lambda p, wd, c: RMSprop(p, LR, BETA, weight_decay=wd, compile=c),
        torch.optim.RMSprop,
        {"alpha": BETA},
        has_fused=False,
    ),
    Case("adam", lambda p, wd, c: Adam(p, LR, weight_decay=wd, compile=c), torch.optim.Adam),
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


def stepper(optimizer: torch.optim.Optimizer) -> Callable[[], Any]:
    """`optimizer.step`, with a closure where it needs one (the fixed grads stay as they are)."""
    if getattr(optimizer, "needs_closure", False):
        return lambda: optimizer.step(lambda: torch.zeros(()))
    return optimizer.step


def race(
    factories: dict[str, Factory],
    model: MLP,
    repeats: int,
    inner: int,
    clock: Clock,
    first_steps: dict[str, float] | None = None,
) -> dict[str, list[float]]:
    """Seconds per step of each optimizer, one sample per repeat, in a rotating order.

    `first_steps`, when given, gets each optimizer's first step in wall seconds (a compiled one
    compiles then)."""
    device = next(model.parameters()).device
    optimizers = {
        name: stepper(factory(parameters_with_grads(model))) for name, factory in factories.items()
    }
    for name, optimizer in optimizers.items():  # creates the state, warms caches, compiles
        start = time.perf_counter()
        optimizer()
        synchronize(device)
        if first_steps is not None:
            first_steps[name] = time.perf_counter() - start
        for _ in range(4):
            optimizer()
    names = list(optimizers)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            optimizer = optimizers[name]
            synchronize(device)
            start = clock()
            for _ in range(inner):
                optimizer()
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
        logits = model(x)  # (batch,) or, for an ensemble, (batch, members)
        F.binary_cross_entropy_with_logits(
            logits, y.view(-1, *[1] * (logits.dim() - 1)).expand_as(logits)
        ).backward()
        synchronize(device)
        middle = clock()
        stepper(optimizer)()
        synchronize(device)
        end = clock()
        if repeat >= 3:  # the first iterations allocate gradients and state
            iterations.append(end - start)
            shares.append((end - middle) / (end - start))
    return statistics.median(iterations), statistics.median(shares)


def table_row(
    case: Case, samples: dict[str, list[float]], first_steps: dict[str, float]
) -> dict[str, str]:
    """The step columns of one optimizer's row, titled."""
    best = "fused" if case.has_fused else "foreach"

    def ms(name: str) -> str:
        return f"{1e3 * statistics.median(samples[name]):.3f}" if name in samples else "—"

    def ratio(name: str) -> str:
        return f"{paired_ratio(samples[name], samples[best]):.2f}"

    return {
        "optimizer": case.label,
        "eager ms": ms("eager"),
        "compiled ms": ms("compiled"),
        "foreach ms": ms("foreach"),
        "fused ms": ms("fused"),
        "eager/best": ratio("eager"),
        "compiled/best": ratio("compiled"),
        "best": best,
        "compile s": f"{first_steps['compiled']:.1f}",
    }


def format_row(cells: list[str]) -> str:
    """First cell left-aligned in 19 columns, the others right-aligned in 13."""
    return f"  {cells[0]:<19}" + "".join(f"{cell:>13}" for cell in cells[1:])


def bench_network(
    in_features: int, hidden: list[int], device: torch.device, args: argparse.Namespace
) -> None:
    torch.manual_seed(0)
    model = MLP(in_features, hidden, batch_norm=args.members > 1, members=args.members).to(device)
    count = sum(p.numel() for p in model.parameters())
    shape = "→".join(str(n) for n in [in_features, *hidden, 1])
    tensors = len(list(model.parameters()))
    print(f"\n{args.members} x {shape} ({count:,} parameters in {tensors} tensors)")

    twins: dict[str, Factory] = {
        "a": lambda p: torch.optim.Adam(p, LR, foreach=True),
        "b": lambda p: torch.optim.Adam(p, LR, foreach=True),
    }
    noise = race(twins, model, args.repeats, args.inner, args.clock)
    print(f"  noise: torch foreach Adam vs itself {paired_ratio(noise['a'], noise['b']):.2f}")

    wd = args.weight_decay
    for index, case in enumerate(CASES):
        factories: dict[str, Factory] = {
            "eager": lambda p, case=case: case.ours(p, wd, False),
            "compiled": lambda p, case=case: case.ours(p, wd, True),
            "foreach": lambda p, case=case: case.theirs(
                p, LR, **case.theirs_kwargs, weight_decay=wd, foreach=True
            ),
        }
        if case.has_fused:
            factories["fused"] = lambda p, case=case: case.theirs(
                p, LR, **case.theirs_kwargs, weight_decay=wd, fused=True
            )
        first_steps: dict[str, float] = {}
        # Each row's own compiled graphs (loaded from Inductor's disk cache): Dynamo keeps at
        # most 8 per functional step and process, and past them runs it uncompiled with the
        # compiled path's tensor scalars, 2-5x slower than fused (the 4 momentum rows at 2 or
        # more networks or thread counts did), which is no measure of the compiled step.
        torch._dynamo.reset()
        samples = race(factories, model, args.repeats, args.inner, args.clock, first_steps)
        iteration, share = step_share(
            lambda p, case=case: case.ours(p, wd, "auto"),
            model,
            args.batch,
            args.iterations,
            args.clock,
        )
        row = table_row(case, samples, first_steps)
        row["iteration ms"] = f"{1e3 * iteration:.3f}"
        row["step share"] = f"{share:.0%}"
        if index == 0:
            print(format_row(list(row)))
        print(format_row(list(row.values())), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--in-features",
        type=int,
        nargs="+",
        default=[768],
        help="input sizes, one network each (default 768 = 16*16*3, the default recipe's)",
    )
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 128])
    parser.add_argument(
        "--members",
        type=int,
        default=4,
        help="ensemble members, with batch norm when > 1 (default 4: the speed issue's figures)",
    )
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
        nargs="+",
        default=[1],
        help="CPU thread counts, one table each (default 1: on a shared machine, OpenMP waits "
        "for a descheduled second thread swamp the timings; 0 keeps torch's default)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    if args.inner is None:
        args.inner = 20 if device.type == "cuda" else 1
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"torch {torch.__version__} on {where}; lr {LR}, β {BETA}, weight decay "
        f"{args.weight_decay}; medians of {args.repeats} samples of {args.inner} steps; "
        f"Inductor cache {cache_dir()}"
    )
    print(
        "counterparts: momentum ema → SGD(momentum=β, dampening=β) (same recurrence, buffer "
        "starts at g₁); momentum classic → SGD(momentum=β); nesterov (both forms) → "
        "SGD(nesterov=True); rmsprop → RMSprop(alpha=β), which has no fused version"
    )
    default_threads = torch.get_num_threads()
    for threads in args.threads:
        torch.set_num_threads(threads if threads > 0 else default_threads)
        on_one_cpu_thread = device.type == "cpu" and torch.get_num_threads() == 1
        args.clock = time.thread_time if on_one_cpu_thread else time.perf_counter
        print(
            f"\n== {torch.get_num_threads()} CPU threads, load average "
            f"{os.getloadavg()[0]:.1f}, clock: "
            f"{'thread CPU time' if on_one_cpu_thread else 'wall time'}"
        )
        for in_features in args.in_features:
            bench_network(in_features, args.hidden, device, args)


if __name__ == "__main__":
    main()
