"""What catdog guarantees: interruption and resume, atomic checkpoints, divergence, trust."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from catdog.checkpoint import CheckpointError, load_checkpoint
from catdog.errors import Diverged
from catdog.runs import read_metrics
from tests.helpers import catdog, resume, small_config, without_time

SLOW_RUN = [
    "--set", "data.image_size=16", "--set", "model.hidden=[64]", "--set", "train.epochs=30",
    "--set", "train.batch_size=4", "--set", "train.progress=false", "--set", "data.workers=0",
    "--set", "optimizer.name=nesterov", "--set", "model.dropout=0.2",
    "--set", "data.augment.hflip=true",
]  # fmt: skip


def wait_for(condition, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.05)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_and_resumed_equals_uninterrupted(
    demo_photos: Path, tmp_path: Path, signum: int, code: int
) -> None:
    common = ["--set", f"data.root={demo_photos}", "--set", f"output.dir={tmp_path}", *SLOW_RUN]
    whole = catdog("train", *common, "--set", "output.name=whole")
    assert whole.returncode == 0, whole.stderr

    process = subprocess.Popen(
        [sys.executable, "-m", "catdog", "train", *common, "--set", "output.name=cut"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = tmp_path / "cut" / "metrics.csv"
    wait_for(metrics.exists)  # epoch 1 done: the kill lands inside epoch 2
    time.sleep(random.uniform(0.05, 0.3))
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert f"catdog train --resume {tmp_path / 'cut'}" in stderr
    stopped = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["progress"]
    assert stopped["step"] > 0, "the signal should land mid-epoch"

    resumed = catdog("train", "--resume", tmp_path / "cut")
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert without_time(read_metrics(tmp_path / "cut" / "metrics.csv")) == without_time(
        read_metrics(tmp_path / "whole" / "metrics.csv")
    )


SAVER = """
import sys, torch
from pathlib import Path
from catdog.checkpoint import save_checkpoint
path = Path(sys.argv[1])
payloads = [
    {"model": {"w": torch.full((256, 1024), float(v))}, "config": {},
     "normalization": {"mean": [0.0], "std": [1.0]}}
    for v in (1, 2)
]
print("ready", flush=True)
i = 0
while True:
    save_checkpoint(payloads[i % 2], path)
    i += 1
"""


def test_sigkill_while_saving_never_leaves_a_corrupt_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    rng = random.Random(0)
    for _ in range(15):
        process = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.4))
        process.kill()
        process.wait()
        if path.exists():
            value = load_checkpoint(path)["model"]["w"]
            assert value.unique().tolist() in ([1.0], [2.0])


def test_divergence_keeps_metrics_and_the_last_good_checkpoint(
    demo_photos: Path, tmp_path: Path
) -> None:
    config = small_config(demo_photos, tmp_path, "train.epochs=1", "output.name=d", "loss=bce")
    from catdog.experiment import run

    summary = run(config, "d")
    good = torch.load(summary.run_dir / "last.pt", weights_only=True)
    exploding = config.model_copy(
        update={"optimizer": config.optimizer.model_copy(update={"lr": 1e30})}
    )
    exploding = exploding.model_copy(
        update={"train": config.train.model_copy(update={"epochs": 3})}
    )
    with pytest.raises(Diverged, match=r"loss became (nan|inf).*smaller lr"):
        resume(exploding, summary.run_dir)
    after = torch.load(summary.run_dir / "last.pt", weights_only=True)
    assert all(torch.equal(good["model"][k], after["model"][k]) for k in good["model"])
    assert len(read_metrics(summary.run_dir / "metrics.csv")) == 1


def test_divergence_through_the_cli_says_what_to_do(demo_photos: Path, tmp_path: Path) -> None:
    result = catdog(
        "train", "--set", f"data.root={demo_photos}", "--set", f"output.dir={tmp_path}",
        "--set", "optimizer.lr=1e30", "--set", "loss=bce", *SLOW_RUN[:10],
    )  # fmt: skip
    assert result.returncode == 3
    assert "smaller lr" in result.stderr and "Traceback" not in result.stderr


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.pt"
    torch.save(
        {
            "format": "catdog-checkpoint-v1",
            "model": _Exploit(marker),
            "config": {},
            "normalization": {},
        },
        crafted,
    )
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(crafted)
    result = catdog("evaluate", crafted)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "refused" in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", None])
def test_foreign_files_are_one_line_errors(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "other.pt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, path)  # a real torch file, but not ours
    else:
        path.write_bytes(content)
    result = catdog("predict", path, "x.jpg")
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and str(path) in result.stderr
