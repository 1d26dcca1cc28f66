"""Data-parallel training: processes sharing a global batch train exactly as one process does.

The multi-process tests fork real ranks from this process (no re-import of torch: that costs
~15 s a process on a busy machine) and join them in a real gloo process group on a free port.
One test starts the real CLI with `--nproc 2`, i.e. torchrun's launcher and fresh processes.
"""

import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from queue import Empty
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from catdog import distributed
from catdog.builders import prepare_data
from catdog.config import Config, ConfigError, load_config
from catdog.distributed import check_distributed
from catdog.experiment import run
from catdog.losses import LOSSES
from catdog.metrics import measure, merge_measurements
from catdog.model import MLP
from catdog.optim import OPTIMIZERS
from catdog.runs import read_metrics
from tests.helpers import catdog, largest_difference, resume, weights, with_epochs, without_time

TOLERANCE = 1e-5


# --- photos and configs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 small JPEGs in Kaggle's flat layout: noise tinted a little red (cats) or blue (dogs)."""
    folder = tmp_path_factory.mktemp("photos")
    generator = np.random.default_rng(0)
    for label, tint in (("cat", (3, 0, -3)), ("dog", (-3, 0, 3))):
        for index in range(30):
            noise = generator.integers(60, 196, size=(12, 12, 3))
            pixels = np.clip(noise + np.array(tint), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{label}.{index}.jpg", quality=90)
    return folder


def ddp_config(photos: Path, tmp_path: Path, *overrides: str) -> Config:
    """48 training photos, 12 for validation; batch 47 splits 24/23, then 1/0 over 2 ranks."""
    return load_config(
        None,
        [
            f"data.root={photos}",
            "data.image_size=8",
            "data.workers=0",
            "model.hidden=[16]",
            "train.epochs=2",
            "train.batch_size=47",
            "train.progress=false",
            "optimizer.lr=0.05",
            "device=cpu",
            f"output.dir={tmp_path / 'runs'}",
            *overrides,
        ],
    )


def named(config: Config, name: str) -> Config:
    return config.model_copy(update={"output": config.output.model_copy(update={"name": name})})


def assert_same_metrics(a: Path, b: Path) -> None:
    """Same epochs and columns; the losses agree to float32 rounding, the accuracies exactly."""
    first, second = without_time(read_metrics(a)), without_time(read_metrics(b))
    assert [list(r) for r in first] == [list(r) for r in second]
    for x, y in zip(first, second, strict=True):
        assert x["epoch"] == y["epoch"] and x["val_accuracy"] == y["val_accuracy"]
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=TOLERANCE)
        assert x["val_loss"] == pytest.approx(y["val_loss"], rel=TOLERANCE)


# --- running ranks ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def in_ranks(job: Callable[[], Any], world_size: int = 2, timeout: float = 120) -> list[Any]:
    """Run `job` in `world_size` forked processes joined in one gloo group; each rank's result.

    An exception becomes ("raised", class name, message, exit code) so the ranks compare.
    """
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    port = free_port()
    ranks = [
        context.Process(target=_rank, args=(rank, world_size, port, job, queue))
        for rank in range(world_size)
    ]
    for process in ranks:
        process.start()
    results: dict[int, Any] = {}
    try:
        for _ in ranks:
            try:
                rank, result = queue.get(timeout=timeout)
            except Empty:
                pytest.fail(f"a rank gave no result in {timeout} s: stuck in a collective?")
            results[rank] = result
    finally:
        for process in ranks:
            process.join(5)
            if process.is_alive():  # stuck in a collective the others never joined
                process.kill()
    return [results[rank] for rank in range(world_size)]


def _rank(rank: int, world_size: int, port: int, job: Callable[[], Any], queue: Any) -> None:
    # The parent's OpenMP threads don't survive fork; a parallel region would hang.
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    try:
        with distributed.process_group("cpu"):
            result = job()
    except BaseException as error:
        result = ("raised", type(error).__name__, str(error), getattr(error, "exit_code", None))
    queue.put((rank, result))


# --- the maths is one process's --------------------------------------------------------------


@pytest.mark.parametrize(
    "optimizer",
    [
        ["optimizer.name=momentum", "optimizer.formulation=classic", "data.augment.hflip=true"],
        # Mixup's partners of a rank's rows may live on the other rank.
        [
            "optimizer.name=nesterov",
            "optimizer.lookahead=true",
            "train.batch_size=11",
            "data.augment.mixup=0.4",
        ],
    ],
    ids=["momentum", "nesterov-lookahead"],
)
def test_two_ranks_take_the_steps_of_one_process(
    photos: Path, tmp_path: Path, optimizer: list[str]
) -> None:
    config = ddp_config(photos, tmp_path, *optimizer)
    one = run(config, "one")
    run_dirs = in_ranks(lambda: run(config, "two").run_dir)
    assert run_dirs[0] == run_dirs[1], "every rank trains into rank 0's run folder"
    two = run_dirs[0]
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.run_dir.iterdir())
    assert largest_difference(weights(two), weights(one.run_dir)) <= TOLERANCE
    assert_same_metrics(two / "metrics.csv", one.run_dir / "metrics.csv")


def test_resume_under_ddp_continues_like_one_process(photos: Path, tmp_path: Path) -> None:
    config = ddp_config(photos, tmp_path, "optimizer.name=adam", "optimizer.lr=0.01")
    whole = run(config, "whole")

    def part_then_rest() -> Path:
        run_dir = run(with_epochs(config, 1), "part").run_dir
        resume(config, run_dir)
        return run_dir

    run_dir = in_ranks(part_then_rest)[0]
    assert largest_difference(weights(run_dir), weights(whole.run_dir)) <= TOLERANCE
    assert_same_metrics(run_dir / "metrics.csv", whole.run_dir / "metrics.csv")


def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step(
    photos: Path, tmp_path: Path
) -> None:
    """Rank 1 alone gets SIGTERM; both ranks stop after the same step, rank 0 saves, and the
    resumed run (dropout, so each rank's random stream matters) equals one never stopped."""
    config = ddp_config(
        photos, tmp_path, "train.epochs=500", "train.batch_size=11", "model.dropout=0.3"
    )
    config = named(config, "x")
    run_dir = Path(config.output.dir) / "x"

    def interrupted() -> Any:
        if distributed.rank() == 1:
            threading.Thread(target=_terminate_after_first_epoch, args=(run_dir,)).start()
        return run(config, "x")

    outcomes = in_ranks(interrupted)
    assert outcomes[0] == outcomes[1], "both ranks stop at the same step, with the same message"
    kind, _, message, exit_code = outcomes[0]
    assert (kind, exit_code) == ("raised", 128 + signal.SIGTERM), message
    assert "SIGTERM: stopped at" in message
    stopped = torch.load(run_dir / "last.pt", weights_only=True)["progress"]
    epochs = stopped["epoch"] + 1  # finish the epoch it stopped in
    in_ranks(lambda: resume(with_epochs(config, epochs), run_dir))

    never_stopped = named(with_epochs(config, epochs), "y")
    other = in_ranks(lambda: run(never_stopped, "y").run_dir)[0]
    assert largest_difference(weights(run_dir), weights(other)) == 0.0
    assert without_time(read_metrics(run_dir / "metrics.csv")) == without_time(
        read_metrics(other / "metrics.csv")
    )


def _terminate_after_first_epoch(run_dir: Path) -> None:
    while not (run_dir / "metrics.csv").exists():
        time.sleep(0.005)
    os.kill(os.getpid(), signal.SIGTERM)


def test_divergence_stops_every_rank(photos: Path, tmp_path: Path) -> None:
    config = ddp_config(photos, tmp_path, "loss=bce", "optimizer.lr=1e30", "train.epochs=3")
    outcomes = in_ranks(lambda: run(config, "d"))
    assert [outcome[:2] for outcome in outcomes] == [("raised", "Diverged")] * 2


def test_validation_parts_merge_into_the_whole(photos: Path, tmp_path: Path) -> None:
    config = ddp_config(photos, tmp_path, "data.val_fraction=0.5")
    data = prepare_data(config, progress=False)
    torch.manual_seed(0)
    model = MLP(config.data.in_features, [8])

    def measured(rows: np.ndarray) -> Any:
        pixels, labels = data.images.pixels, data.images.labels
        return measure(model, pixels, labels, rows, data.mean, data.std, LOSSES["bce"], "cpu")

    whole = measured(data.val_indices)
    rows = np.sort(data.val_indices)
    for world_size in (2, 3, 7):
        merged = merge_measurements([measured(rows[r::world_size]) for r in range(world_size)])
        assert (merged.count, merged.confusion) == (whole.count, whole.confusion)
        assert merged.accuracy == whole.accuracy
        assert merged.loss == pytest.approx(whole.loss, rel=1e-6)
        np.testing.assert_allclose(merged.probabilities, whole.probabilities, rtol=1e-6)


# --- what DDP refuses, and one process untouched ---------------------------------------------


def test_refusals_name_the_key(photos: Path, tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    batch_norm = ddp_config(photos, tmp_path, "model.batch_norm=true")
    with pytest.raises(ConfigError, match=r"^model\.batch_norm: .*SyncBatchNorm"):
        check_distributed(batch_norm, 2, cpu)
    check_distributed(batch_norm, 1, cpu)  # one process: plain batch norm is exact
    with pytest.raises(ConfigError, match=r"^device: 'cuda:1' names one GPU"):
        distributed.rank_device("cuda:1", 0)
    assert distributed.rank_device("cpu", 5) == cpu


def test_gradient_free_optimizers_are_refused() -> None:
    free = [name for name, cls in OPTIMIZERS.items() if not getattr(cls, "uses_gradients", True)]
    if not free:
        pytest.skip("no gradient-free optimizer (genetic) is registered in this checkout")
    config = load_config(None, [f"optimizer.name={free[0]}"])  # it takes no lr
    with pytest.raises(ConfigError, match=r"^optimizer\.name: .*gradient-free"):
        check_distributed(config, 2, torch.device("cpu"))


def test_without_world_size_there_is_no_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.process_group("cpu"):
        assert not distributed.active()
        assert (distributed.rank(), distributed.world_size()) == (0, 1)
        assert distributed.sum_across([1.5, 2]) == [1.5, 2]
        assert distributed.on_main(lambda: "made once") == "made once"
        assert distributed.all_gather(3) == [3]


def test_launcher_reports_the_first_failed_workers_exit_code() -> None:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    def failed(*codes: int) -> ChildFailedError:
        failures = {r: ProcessFailure(r, 100 + r, code, "<N/A>") for r, code in enumerate(codes)}
        return ChildFailedError("catdog", failures)

    assert distributed.exit_code(failed(2, 2)) == 2
    assert distributed.exit_code(failed(-signal.SIGKILL)) == 128 + signal.SIGKILL


# --- the command line ------------------------------------------------------------------------


def test_nproc_trains_like_one_process(photos: Path, tmp_path: Path) -> None:
    """`catdog train --nproc 2`: torchrun's launcher, two fresh processes, one run folder."""
    config_file = tmp_path / "small.yaml"
    config_file.write_text(
        f"device: cpu\ndata: {{root: {photos}, image_size: 8, workers: 0}}\n"
        "model: {hidden: [16]}\noptimizer: {name: momentum, lr: 0.05}\n"
        "train: {epochs: 2, batch_size: 47, progress: false}\n"
        f"output: {{dir: {tmp_path / 'runs'}, name: two}}\n"
    )
    result = catdog("train", "--nproc", "2", "--config", config_file, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("run: ") == 1, "only rank 0 reports"
    assert result.stdout.count("epoch   2/2") == 1
    one = run(load_config(config_file, ["output.name=one"]), "one")
    two = tmp_path / "runs" / "two"
    assert_same_metrics(two / "metrics.csv", one.run_dir / "metrics.csv")
    assert largest_difference(weights(two), weights(one.run_dir)) <= TOLERANCE


def test_nproc_refuses_before_launching() -> None:
    from typer.testing import CliRunner

    from catdog.cli import app

    overrides = ["--set", "device=cpu", "--set", "model.batch_norm=true"]
    result = CliRunner().invoke(app, ["train", "--nproc", "2", *overrides])
    assert result.exit_code == 2
    assert result.output.startswith("error: model.batch_norm: ")
    assert result.output.count("\n") == 1


@pytest.mark.parametrize("rank", ["0", "1"])
def test_an_error_every_rank_raises_is_reported_by_rank_0_alone(
    monkeypatch: pytest.MonkeyPatch, rank: str
) -> None:
    from typer.testing import CliRunner

    from catdog.cli import app

    for name, value in {"WORLD_SIZE": "2", "RANK": rank, "LOCAL_RANK": rank}.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["train", "--set", "device=cuda:1"])
    assert result.exit_code == 2
    expected = "error: device: 'cuda:1' names one GPU" if rank == "0" else ""
    assert result.output.startswith(expected) and (rank == "0" or result.output == "")
