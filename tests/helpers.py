"""Helpers shared by the test modules (plain functions; the fixtures live in conftest.py).

Test modules import from here and never from each other.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from torch import nn

from catdog.config import Config, load_config
from catdog.experiment import run
from catdog.model import MLP, MemberLinear
from catdog.runs import load_resume, read_metrics
from catdog.train import train

REPO = Path(__file__).resolve().parents[1]
REAL_PHOTOS = REPO.parent / "shared" / "data" / "dogs-vs-cats" / "train"


def catdog(
    *args: str | Path,
    cwd: Path | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "catdog", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """The CLI refused: exit code 2 and one line on stderr, `error: ...`, naming each of `words`."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


# --- configs and runs -------------------------------------------------------------------------

TINY_RUN = [
    "--set", "data.image_size=16",
    "--set", "model.hidden=[32]",
    "--set", "train.epochs=2",
    "--set", "train.progress=false",
    "--set", "data.workers=0",
]  # fmt: skip
"""`catdog train` options that make a run of the demo config train in seconds."""


def train_tiny_run(photos: Path, runs: Path, name: str) -> Path:
    """`catdog train` of the demo config with TINY_RUN on `photos`, into `runs/name`."""
    result = catdog(
        "train", "--config", REPO / "configs" / "demo.yaml",
        "--set", f"data.root={photos}",
        "--set", f"output.dir={runs}", "--set", f"output.name={name}", *TINY_RUN,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return runs / name


def small_config(photos: Path, tmp_path: Path, *overrides: str) -> Config:
    """A config that trains in seconds on the demo photos: 16 px, one hidden layer of 32."""
    return load_config(
        None,
        [
            f"data.root={photos}",
            "data.image_size=16",
            "data.workers=0",
            "model.hidden=[32]",
            "train.epochs=3",
            "train.batch_size=16",
            "train.progress=false",
            "optimizer.lr=0.1",
            f"output.dir={tmp_path / 'runs'}",
            *overrides,
        ],
    )


def write_tiny_config(
    tmp_path: Path, photos: Path, epochs: int = 3, name: str = "tiny.yaml", **optimizer: object
) -> Path:
    """A config file for runs of a second or two: 8 px, 16 hidden units, SGD (or `optimizer`)."""
    path = tmp_path / name
    settings = {
        "data": {"root": str(photos), "image_size": 8, "workers": 0},
        "model": {"hidden": [16]},
        "optimizer": {"name": "sgd", "lr": 0.1, **optimizer},
        "train": {"epochs": epochs, "batch_size": 8, "progress": False, "threads": 1},
    }
    path.write_text(yaml.safe_dump(settings))
    return path


def with_epochs(config: Config, epochs: int) -> Config:
    return config.model_copy(update={"train": config.train.model_copy(update={"epochs": epochs})})


def without_time(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    """metrics.csv rows without the columns that time the run."""
    return [{k: v for k, v in r.items() if k not in ("seconds", "elapsed")} for r in rows]


def weights(run_dir: Path, name: str = "last.pt") -> dict[str, torch.Tensor]:
    return torch.load(run_dir / name, weights_only=True)["model"]


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest absolute difference between two state dicts of the same keys."""
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def assert_resume_matches_whole(config: Config, stop_after: int) -> None:
    """A run stopped after `stop_after` epochs, then resumed, logs what the whole run logs and
    ends with the same weights."""
    whole = run(config, "whole")
    part = run(with_epochs(config, stop_after), "part")
    resumed, checkpoint = load_resume(part.run_dir, [f"train.epochs={config.train.epochs}"])
    train(resumed, part.run_dir, checkpoint=checkpoint)
    assert without_time(read_metrics(part.run_dir / "metrics.csv")) == without_time(
        read_metrics(whole.run_dir / "metrics.csv")
    )
    assert largest_difference(weights(whole.run_dir), weights(part.run_dir)) == 0.0


# --- networks ---------------------------------------------------------------------------------


def member(ensemble: MLP, k: int) -> MLP:
    """Member k of `ensemble` copied into a single-network MLP of `nn.Linear` layers."""
    dtype = next(ensemble.parameters()).dtype
    widths = [m.weight.shape[-1] for m in ensemble.layers if isinstance(m, MemberLinear)]
    single = MLP(ensemble.in_features, widths[:-1], members=1).to(dtype)
    linears = [m for m in single.layers if isinstance(m, nn.Linear)]
    batched = [m for m in ensemble.layers if isinstance(m, MemberLinear)]
    with torch.no_grad():
        for linear, stacked in zip(linears, batched, strict=True):
            linear.weight.copy_(stacked.weight[k].T)
            linear.bias.copy_(stacked.bias[k, 0])
    return single


def resume(config: Config, run_dir: Path):
    """Continue the run in `run_dir` from its last.pt under `config` (as `--resume` does)."""
    from catdog.checkpoint import load_checkpoint

    return train(config, run_dir, checkpoint=load_checkpoint(run_dir, prefer="last.pt"))


def write_photo(path: Path, seed: int, size: tuple[int, int] = (48, 36)) -> Path:
    """A seeded JPEG (a coloured ramp under noise) of `size` (width, height) at `path`."""
    rng = np.random.default_rng(seed)
    width, height = size
    ramp = np.linspace(0, 200, width)[None, :, None] * rng.random(3)
    pixels = np.clip(ramp + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path
