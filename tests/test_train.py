"""The training loop on generated photos: learning, reproducibility, checkpoints, resume."""

from pathlib import Path

import pytest
import torch

from catdog.config import Config, ConfigError, load_config
from catdog.errors import Diverged
from catdog.experiment import run
from catdog.losses import LOSSES
from catdog.runs import new_run_dir, read_metrics
from catdog.train import train
from catdog.train_step import learning_rate, train_step
from tests.helpers import assert_resume_matches_whole, small_config, without_time


def test_training_lowers_the_loss_and_writes_the_run(demo_photos: Path, tmp_path: Path) -> None:
    config = small_config(demo_photos, tmp_path, "train.epochs=6", "loss=bce")
    summary = run(config, "t")
    rows = read_metrics(summary.run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert summary.best_accuracy > 0.5
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.csv"):
        assert (summary.run_dir / name).is_file()
    assert load_config(summary.run_dir / "config.yaml") == config


def test_same_seed_same_metrics(demo_photos: Path, tmp_path: Path) -> None:
    config = small_config(
        demo_photos,
        tmp_path,
        "model.dropout=0.2",
        "data.augment.hflip=true",
        "data.augment.mixup=0.4",  # soft targets through the MSE loss
    )
    first = read_metrics(run(config, "a").run_dir / "metrics.csv")
    second = read_metrics(run(config, "b").run_dir / "metrics.csv")
    assert without_time(first) == without_time(second)
    other = read_metrics(
        run(small_config(demo_photos, tmp_path, "seed=1"), "c").run_dir / "metrics.csv"
    )
    assert without_time(other) != without_time(first)


@pytest.mark.parametrize("batch_size", ["full", "1"])
def test_full_batch_and_single_example_batches(
    demo_photos: Path, tmp_path: Path, batch_size: str
) -> None:
    summary = run(
        small_config(
            demo_photos,
            tmp_path,
            f"train.batch_size={batch_size}",
            "train.epochs=1",
            "optimizer.name=adam",
            "optimizer.lr=0.001",
        ),
        "b",
    )
    assert summary.epochs == 1
    # Adam counts its steps: one per batch.
    state = torch.load(summary.run_dir / "last.pt", weights_only=True)["optimizer"]["state"]
    steps = {int(param["step"]) for param in state.values()}
    training_photos = 96  # 80% of the 120 demo photos
    assert steps == {1 if batch_size == "full" else training_photos}


def test_checkpoints_load_without_pickled_code(demo_photos: Path, tmp_path: Path) -> None:
    summary = run(small_config(demo_photos, tmp_path, "train.epochs=1"), "c")
    checkpoint = torch.load(summary.run_dir / "last.pt", weights_only=True)
    assert {"model", "optimizer", "config", "normalization", "progress", "rng"} <= set(checkpoint)
    assert checkpoint["progress"]["epoch"] == 1
    assert len(checkpoint["normalization"]["mean"]) == 3


def test_resume_extends_a_run_identically(demo_photos: Path, tmp_path: Path) -> None:
    config = small_config(
        demo_photos, tmp_path, "optimizer.name=momentum", "model.dropout=0.1", "train.epochs=4"
    )
    assert_resume_matches_whole(config, stop_after=2)


def test_divergence_stops_and_keeps_the_last_good_checkpoint(
    demo_photos: Path, tmp_path: Path
) -> None:
    config = small_config(demo_photos, tmp_path, "loss=bce", "optimizer.lr=1e30", "train.epochs=3")
    run_dir = new_run_dir(config, "d")
    with pytest.raises(Diverged, match="smaller lr"):
        train(config, run_dir)
    assert (run_dir / "config.yaml").is_file()


def test_a_run_folder_is_never_overwritten(demo_photos: Path, tmp_path: Path) -> None:
    config = small_config(demo_photos, tmp_path, "output.name=fixed", "train.epochs=1")
    run(config, "x")
    with pytest.raises(ConfigError, match="already exists"):
        run(config, "x")


def test_learning_rate_schedules() -> None:
    schedule = Config().train.schedule
    assert learning_rate(schedule, 0.1, 3.5, 10) == 0.1
    cosine = schedule.model_copy(update={"name": "cosine", "warmup_epochs": 1.0})
    assert learning_rate(cosine, 0.1, 0.5, 11) == pytest.approx(0.05)
    assert learning_rate(cosine, 0.1, 1.0, 11) == pytest.approx(0.1)
    assert learning_rate(cosine, 0.1, 6.0, 11) == pytest.approx(0.05)
    assert learning_rate(cosine, 0.1, 11.0, 11) == pytest.approx(0.0, abs=1e-12)
    step = schedule.model_copy(update={"name": "step", "step_epochs": 2, "gamma": 0.5})
    assert [learning_rate(step, 1.0, e, 6) for e in (0, 1.9, 2, 4.5)] == [1.0, 1.0, 0.5, 0.25]


def test_bf16_steps_keep_float32_weights_and_state_and_still_learn(
    demo_photos: Path, tmp_path: Path
) -> None:
    config = small_config(
        demo_photos, tmp_path, "train.precision=bf16", "optimizer.name=adam",
        "optimizer.lr=0.003", "loss=bce", "train.epochs=4", "data.normalization=zca",
    )  # fmt: skip
    summary = run(config, "bf16")
    rows = read_metrics(summary.run_dir / "metrics.csv")
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    checkpoint = torch.load(summary.run_dir / "last.pt", weights_only=True)
    assert {t.dtype for t in checkpoint["model"].values()} == {torch.float32}
    states = checkpoint["optimizer"]["state"].values()
    moments = [s[name] for s in states for name in ("first_moment", "second_moment")]
    assert moments and all(m.dtype == torch.float32 for m in moments)
    same_in_fp32 = small_config(demo_photos, tmp_path, *_without_bf16(config))
    fp32 = read_metrics(run(same_in_fp32, "f").run_dir / "metrics.csv")
    # Same seed, same batches: only the products' rounding differs, so the runs stay close.
    assert abs(rows[-1]["train_loss"] - fp32[-1]["train_loss"]) < 0.05


def _without_bf16(_: Config) -> list[str]:
    return [
        "optimizer.name=adam", "optimizer.lr=0.003", "loss=bce", "train.epochs=4",
        "data.normalization=zca",
    ]  # fmt: skip


def test_whitening_runs_in_float32_under_bf16_autocast() -> None:
    from catdog.model import Whitening

    torch.manual_seed(0)
    layer = Whitening(8)
    layer.set(torch.randn(8), torch.randn(8, 8) * 10)
    x = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = layer(x.bfloat16())
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, layer(x.bfloat16().float()), rtol=0, atol=0)


def test_the_cli_parses_a_config_once_and_reads_last_pt_once_on_resume(
    demo_photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One trip YAML → Config → checkpoint: the command checks what it was given, then the loop
    takes that same config, and a resume hands the one loaded last.pt to the loop."""
    from typer.testing import CliRunner

    from catdog import checkpoint as checkpoint_module
    from catdog.cli import app
    from tests.helpers import REPO, TINY_RUN

    validated: list[object] = []
    loaded: list[str] = []
    real_validate = Config.model_validate.__func__  # type: ignore[attr-defined]
    real_load = torch.load

    def counting_validate(cls: type[Config], data: object, **kwargs: object) -> Config:
        validated.append(data)
        return real_validate(cls, data, **kwargs)

    def counting_load(path: object, *args: object, **kwargs: object) -> object:
        loaded.append(str(path))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(Config, "model_validate", classmethod(counting_validate))
    monkeypatch.setattr(checkpoint_module.torch, "load", counting_load)
    runs = tmp_path / "runs"
    options = [
        "--set", f"data.root={demo_photos}", "--set", f"output.dir={runs}",
        "--set", "output.name=once", *TINY_RUN,
    ]  # fmt: skip
    result = CliRunner().invoke(
        app, ["train", "--config", str(REPO / "configs/demo.yaml"), *options]
    )
    assert result.exit_code == 0, result.output
    assert len(validated) == 1 and loaded == []
    assert len(read_metrics(runs / "once" / "metrics.csv")) == 2

    validated.clear()
    resumed = ["train", "--resume", str(runs / "once"), "--set", "train.epochs=3"]
    result = CliRunner().invoke(app, resumed)
    assert result.exit_code == 0, result.output
    assert len(validated) == 1
    assert [Path(p).name for p in loaded] == ["last.pt"]
    assert len(read_metrics(runs / "once" / "metrics.csv")) == 3


def test_the_files_a_run_writes_before_its_first_checkpoint_are_the_ones_runs_knows() -> None:
    """`runs.BEFORE_FIRST_CHECKPOINT` decides which folders the same command may take over after
    a kill: it must name every file the observers write, under their own modules' names."""
    from fnmatch import fnmatch

    from catdog import runs, step_log, trajectory

    names = runs.BEFORE_FIRST_CHECKPOINT
    written = [runs.CONFIG, runs.LOCK, step_log.STEPS, trajectory.START, trajectory.ROWS]
    written += [trajectory.STEPS, "events.out.tfevents.1764684000.host.123.0"]
    assert all(any(fnmatch(name, pattern) for pattern in names) for name in written)
    assert not any(fnmatch(kept, pattern) for kept in (runs.LAST, runs.BEST, runs.METRICS)
                   for pattern in names)  # fmt: skip


def test_a_folder_with_a_stranger_file_or_a_checkpoint_is_never_taken_over(tmp_path: Path) -> None:
    from catdog import runs

    (tmp_path / runs.CONFIG).write_text("seed: 0\n")
    assert runs.stopped_before_its_first_checkpoint(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    assert not runs.stopped_before_its_first_checkpoint(tmp_path)
    (tmp_path / "notes.txt").unlink()
    (tmp_path / runs.LAST).write_bytes(b"")
    assert not runs.stopped_before_its_first_checkpoint(tmp_path)


def test_a_kill_in_the_first_checkpoint_write_leaves_a_folder_the_same_command_takes(
    tmp_path: Path,
) -> None:
    # Epoch 1's row is appended just before the first last.pt is written: a kill there leaves
    # the row and the write's temporary file. A second row means a checkpoint was saved.
    from catdog import runs

    (tmp_path / runs.CONFIG).write_text("seed: 0\n")
    (tmp_path / ".last.pt.0123456789ab.tmp").write_bytes(b"half")
    header = ",".join(runs.METRICS_FIELDS)
    (tmp_path / runs.METRICS).write_text(f"{header}\n1,0.7,0.7,0.5,0.01,1.0,1.2\n")
    assert runs.stopped_before_its_first_checkpoint(tmp_path)
    with (tmp_path / runs.METRICS).open("a") as file:
        file.write("2,0.6,0.6,0.6,0.01,1.0,2.3\n")
    assert not runs.stopped_before_its_first_checkpoint(tmp_path)


def test_train_step_takes_torchs_own_optimizer_as_the_benchmarks_baseline() -> None:
    # scripts/bench_train.py times train_step with torch's Adam beside ours; torch's optimizers
    # lack our needs_closure / uses_gradients flags, and the step must still be one SGD step.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0))
    weight = model[0].weight
    x, y = torch.randn(8, 3), (torch.rand(8) > 0.5).float()
    LOSSES["bce"](model(x), y).backward()
    expected = weight.detach() - 0.1 * weight.grad
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_step(model, optimizer, LOSSES["bce"], x, y)
    torch.testing.assert_close(weight.detach(), expected)
