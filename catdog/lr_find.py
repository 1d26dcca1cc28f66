"""`catdog lr-find`: Smith's learning-rate range test, and a suggested lr.

From a fresh network, one optimizer step per mini-batch with the lr growing exponentially,
lr_t = lr_min · (lr_max / lr_min)^(t / (steps - 1)), recording each batch's loss. The loss is
smoothed by a bias-corrected moving average (β = 0.98, as the optimizers' `ewa`), and the test
stops once the smoothed loss is non-finite or over BLOWUP times its lowest so far.

The suggestion follows a valley rule (after fastai's): the curve is log(loss), smoothed without
lag (the same moving average forwards, then backwards, β = 0.9); the valley is its longest
stretch of falling loss (the longest decreasing subsequence, first point to last), and the
suggestion is the valley's steepest point, where log(loss) falls fastest per step in log(lr).
On a quadratic ½·a·w² under SGD each step multiplies the loss by (1 - lr·a)², so log(loss)
falls fastest at the closed-form best lr, 1/a. The steepest slope of the whole curve alone is
fooled by an early spike of noise; inside the longest valley it is not. (fastai's valley takes
a fixed point, two thirds of the way in, instead.)
"""

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from catdog.optim.ewa import ewa

if TYPE_CHECKING:
    import torch

    from catdog.config import Config

BETA = 0.98
"""The online average that decides when the loss has blown up."""
CURVE_BETA = 0.9
"""The forward-backward average of log(loss) the suggestion reads."""
BLOWUP = 4.0
RULE = "valley rule: the steepest fall of the smoothed log-loss inside its longest falling stretch"


@dataclass
class RangeTest:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    """The loss as the rule reads it: exp of the lag-free smoothed log(loss)."""
    suggestion: float
    valley: tuple[int, int]
    """First and last index of the longest falling stretch."""
    stopped_early: bool


def lr_schedule(lr_min: float, lr_max: float, steps: int) -> list[float]:
    """`steps` learning rates growing exponentially from lr_min to lr_max."""
    ratio = lr_max / lr_min
    return [lr_min * ratio ** (t / max(steps - 1, 1)) for t in range(steps)]


def range_test(
    step: Callable[[float], float],
    lr_min: float = 1e-7,
    lr_max: float = 10.0,
    steps: int = 100,
    beta: float = BETA,
    blowup: float = BLOWUP,
) -> RangeTest:
    """Run `step(lr)` (one optimizer step, returning its batch loss) over the exponential lrs."""
    check_range(lr_min, lr_max, steps)
    lrs, losses, smoothed = [], [], []
    stopped = False
    for lr in lr_schedule(lr_min, lr_max, steps):
        loss = float(step(lr))
        lrs.append(lr)
        losses.append(loss)
        if not math.isfinite(loss):
            stopped = True
            break
        smoothed.append(ewa(losses, beta, bias_correction=True)[-1])
        if smoothed[-1] > blowup * min(smoothed):
            stopped = True
            break
    curve = log_curve(losses)
    start, end = valley(curve)
    best = steepest(lrs, curve, start, end)
    shown = [math.exp(v) for v in curve]  # the curve the rule read, back in loss units
    shown += [math.nan] * (len(losses) - len(shown))
    return RangeTest(lrs, losses, shown, lrs[best], (start, end), stopped)


def log_curve(losses: Sequence[float], beta: float = CURVE_BETA) -> list[float]:
    """log(loss) smoothed without lag: the bias-corrected average forwards, then backwards.

    A non-finite last loss (the blow-up) is left out; a loss of 0 counts as 1e-300.
    """
    finite = [math.log(max(v, 1e-300)) for v in losses if math.isfinite(v)]
    if not finite:
        return []
    forward = ewa(finite, beta, bias_correction=True)
    return ewa(forward[::-1], beta, bias_correction=True)[::-1]


def steepest(lrs: Sequence[float], curve: Sequence[float], start: int, end: int) -> int:
    """The index in [start, end] where `curve` falls fastest per unit of log(lr)."""
    if end - start < 2:
        return start
    slopes = {
        i: (curve[i + 1] - curve[i - 1]) / math.log(lrs[i + 1] / lrs[i - 1])
        for i in range(max(start, 1), min(end, len(curve) - 2) + 1)
    }
    return min(slopes, key=lambda i: (slopes[i], i)) if slopes else start


def check_range(lr_min: float, lr_max: float, steps: int) -> None:
    from catdog.errors import ConfigError

    if not 0 < lr_min < lr_max:
        raise ConfigError(f"--lr-min {lr_min:g} / --lr-max {lr_max:g}: need 0 < lr-min < lr-max")
    if steps < 5:
        raise ConfigError(f"--steps {steps}: give at least 5 steps")


def valley(curve: Sequence[float]) -> tuple[int, int]:
    """(first, last) index of the longest strictly decreasing subsequence of `curve`.

    longest[i] is the length of the longest decreasing subsequence ending at i, built from
    every earlier j with curve[j] > curve[i]; `first[i]` carries where that subsequence starts.
    Ties keep the earliest. O(n²), for a few hundred points.
    """
    n = len(curve)
    if n == 0:
        return 0, 0
    longest, first = [1] * n, list(range(n))
    for i in range(n):
        for j in range(i):
            if curve[j] > curve[i] and longest[j] + 1 > longest[i]:
                longest[i], first[i] = longest[j] + 1, first[j]
    end = max(range(n), key=lambda i: (longest[i], -i))
    return first[end], end


def plot_range_test(result: RangeTest, path: Path, title: str = "") -> Path:
    from catdog.plots import new_figure, save

    figure = new_figure(7, 4.5)
    axes = figure.subplots()
    axes.plot(result.lrs, result.losses, color="C0", alpha=0.3, label="batch loss")
    axes.plot(
        result.lrs,
        result.smoothed,
        color="C0",
        label=f"smoothed (β = {CURVE_BETA}, forwards and back)",
    )
    start, end = result.valley
    axes.axvspan(result.lrs[start], result.lrs[end], color="C2", alpha=0.12, label="valley")
    axes.axvline(result.suggestion, color="C3", linestyle="--",
                 label=f"suggested lr {result.suggestion:.2g}")  # fmt: skip
    axes.set_xscale("log")
    finite = [v for v in result.smoothed if math.isfinite(v)]
    if finite:
        low, high = min(finite), max(finite[0], min(max(finite), BLOWUP * min(finite)))
        axes.set_ylim(low - 0.05 * (high - low), high + 0.1 * (high - low))
    axes.set_xlabel("learning rate (log scale)")
    axes.set_ylabel("training loss")
    axes.set_title(title or "Learning-rate range test")
    axes.grid(alpha=0.3)
    axes.legend()
    return save(figure, path)


# --- on a config's network and photos ---------------------------------------------------------


@dataclass
class LrFind:
    result: RangeTest
    plot: Path
    saved: Path | None


def find_lr(
    config: "Config",
    plot: Path,
    lr_min: float = 1e-7,
    lr_max: float = 10.0,
    steps: int = 100,
    save_dir: Path | None = None,
) -> LrFind:
    """The range test on `config`'s network and training photos, from its seed's weights.

    Writes only `plot`, unless `save_dir` asks for a folder (config.yaml, lr_find.csv, the plot).
    """
    import torch

    from catdog.batches import Batches, zca_whitening
    from catdog.builders import build_model, make_optimizer, prepare_data, resolve_device
    from catdog.config import optimizer_parameters
    from catdog.errors import ConfigError
    from catdog.losses import LOSSES
    from catdog.optim import OPTIMIZERS
    from catdog.train_step import train_step

    name = config.optimizer.name
    if not OPTIMIZERS[name].uses_gradients or "lr" not in optimizer_parameters(name):
        raise ConfigError(
            f"optimizer.name: {name!r} is gradient-free and takes no learning rate, so there is "
            "no lr to find; run lr-find with a gradient optimizer (sgd, momentum, adam, ...)"
        )
    check_range(lr_min, lr_max, steps)
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    device = resolve_device(config.device)
    data = prepare_data(config, progress=config.train.progress)
    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    if model.whitening is not None:
        whitening = zca_whitening(data.images.pixels, data.train_indices, data.mean, data.std,
                                  config.data.zca_epsilon)  # fmt: skip
        model.whitening.set(*(torch.from_numpy(array) for array in whitening))
    optimizer = make_optimizer(config, model)
    size = config.train.batch_size
    batches = Batches(
        data.images.pixels, data.images.labels, data.train_indices,
        len(data.train_indices) if size == "full" else size, data.mean, data.std,
        device=device, shuffle=True, seed=config.seed, augment=config.data.augment,
    )  # fmt: skip
    loss_fn, members = LOSSES[config.loss], config.model.ensemble
    model.train()

    def epochs() -> (
        "Iterator[tuple[torch.Tensor, torch.Tensor]]"
    ):  # as many epochs of batches as the steps need
        epoch = 0
        while True:
            yield from batches.epoch(epoch)
            epoch += 1

    stream = epochs()

    def step(lr: float) -> float:
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = next(stream)
        return float(train_step(model, optimizer, loss_fn, x, y, weight=members))

    result = range_test(step, lr_min, lr_max, steps)
    saved = None
    if save_dir is not None:
        saved = _save(config, result, save_dir)
        plot = saved / plot.name
    plot_range_test(result, plot, title=f"Range test: {name}, {config.loss}")
    return LrFind(result, plot, saved)


def _save(config: "Config", result: RangeTest, folder: Path) -> Path:
    import csv

    from catdog.config import save_config

    folder.mkdir(parents=True, exist_ok=True)
    save_config(config, folder / "config.yaml")
    with (folder / "lr_find.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["step", "lr", "loss", "smoothed"])
        for i, (lr, loss, smooth) in enumerate(
            zip(result.lrs, result.losses, result.smoothed, strict=True), start=1
        ):
            writer.writerow([i, repr(lr), repr(loss), repr(smooth)])
    return folder
