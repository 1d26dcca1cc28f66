"""The trajectory record, the PCA plane on the ravine, and `catdog landscape` on real runs."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from catdog.builders import build_model, prepare_data
from catdog.errors import ConfigError
from catdog.experiment import run
from catdog.landscape import interpolate, load_runs, make_probe
from catdog.losses import LOSSES
from catdog.metrics import measure
from catdog.optim import build_optimizer
from catdog.plane import successive_cosines, trajectory_plane, weight_space_cosines
from catdog.ravine import RACERS, START, descend, ravine
from catdog.trajectory import ROWS, STEPS, Recorded, Trajectory, read_trajectory
from tests.helpers import REPO, catdog, resume, small_config, weights, with_epochs


class Ravine(nn.Module):
    """The ravine as a network with one 2-weight parameter; its "forward" is f(w)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(START, dtype=torch.float64))

    def forward(self) -> torch.Tensor:
        return ravine(self.w)


def descend_recorded(
    folder: Path, racer: str, steps: int, every: int = 1, **open_options: object
) -> Recorded:
    """Step one of ravine.RACERS' optimizers `steps` times, recording its weights."""
    name, hyperparameters = RACERS[racer]
    model = Ravine()
    optimizer = build_optimizer(name, model.parameters(), **hyperparameters)
    folder.mkdir(parents=True, exist_ok=True)
    recorder = Trajectory.open(folder, every, model, **open_options)  # type: ignore[arg-type]

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = model()
        loss.backward()
        return loss

    for step in range(1, steps + 1):
        if getattr(optimizer, "needs_closure", False):
            optimizer.step(closure)
        else:
            closure()
            optimizer.step()
        recorder.record(step)
    recorder.close()
    return read_trajectory(folder)


# --- the record --------------------------------------------------------------------------------


def test_record_reads_back_the_path_in_float16(tmp_path: Path) -> None:
    said: list[str] = []
    recorded = descend_recorded(tmp_path, "SGD", steps=40, every=3, say=said.append)
    expected = descend("SGD", *RACERS["SGD"], max_steps=40).path
    assert recorded.steps.tolist() == [*range(0, 40, 3), 40]  # every 3rd step, and the last
    assert torch.equal(recorded.start, expected[0].float())  # θ₀ in full float32
    for row, step in enumerate(recorded.steps):
        # float16 moves: 11 significant bits of a move of at most ~10
        assert torch.allclose(recorded.weights(row).double(), expected[step], atol=5e-3)
    assert recorded.size_bytes == len(recorded) * 2 * 2
    assert (tmp_path / ROWS).stat().st_size == recorded.size_bytes
    assert "float16" in said[0] and "4 bytes a row" in said[0]
    assert said[-1] == f"trajectory: {len(recorded)} rows, {recorded.size_bytes} bytes"


def test_resume_drops_rows_after_the_checkpoint_and_appends(tmp_path: Path) -> None:
    whole = descend_recorded(tmp_path / "whole", "momentum (classic)", steps=12, every=2)
    # A run killed after step 9 (rows up to 8 written) resumes from its checkpoint at step 6.
    model = Ravine()
    name, hyperparameters = RACERS["momentum (classic)"]
    optimizer = build_optimizer(name, model.parameters(), **hyperparameters)
    folder = tmp_path / "resumed"
    folder.mkdir()
    recorder = Trajectory.open(folder, 2, model, say=lambda _: None)
    states = {}
    for step in range(1, 10):
        optimizer.zero_grad()
        model().backward()
        optimizer.step()
        recorder.record(step)
        states[step] = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
    del recorder  # killed: never closed
    model.load_state_dict(states[6][0])
    optimizer.load_state_dict(states[6][1])
    said: list[str] = []
    recorder = Trajectory.open(folder, 2, model, step=6, say=said.append)
    assert "continuing" in said[0] and "4 rows kept" in said[0]
    for step in range(7, 13):
        optimizer.zero_grad()
        model().backward()
        optimizer.step()
        recorder.record(step)
    recorder.close()
    resumed = read_trajectory(folder)
    assert resumed.steps.tolist() == whole.steps.tolist() == [0, 2, 4, 6, 8, 10, 12]
    assert np.array_equal(np.asarray(resumed.deltas), np.asarray(whole.deltas))


def test_a_torn_last_row_is_left_out(tmp_path: Path) -> None:
    recorded = descend_recorded(tmp_path, "SGD", steps=5, say=lambda _: None)
    with (tmp_path / ROWS).open("ab") as file:
        file.write(b"\x00\x01")  # half of a 2-weight row
    with (tmp_path / STEPS).open("a") as file:
        file.write("6\n")
    again = read_trajectory(tmp_path)
    assert again.steps.tolist() == recorded.steps.tolist() == list(range(6))


def test_a_record_over_the_cap_is_refused_before_training(tmp_path: Path) -> None:
    model = Ravine()  # 4 bytes a row
    with pytest.raises(
        ConfigError, match=r"train.trajectory: every 1 steps of 100 .* every 4 steps"
    ):
        Trajectory.open(tmp_path, 1, model, total_steps=100, max_bytes=4 * 30)
    assert not (tmp_path / ROWS).exists()
    with pytest.raises(ConfigError, match=r"train\.trajectory: 0"):
        Trajectory.open(tmp_path, 0, model)


def test_the_cap_keeps_room_for_the_final_weights(tmp_path: Path) -> None:
    said: list[str] = []
    recorded = descend_recorded(tmp_path, "SGD", steps=30, say=said.append, max_bytes=4 * 5)
    assert recorded.steps.tolist() == [0, 1, 2, 3, 30]
    assert sum("cap is reached" in line for line in said) == 1
    final = descend("SGD", *RACERS["SGD"], max_steps=30).path[-1]
    assert torch.allclose(recorded.weights(-1).double(), final, atol=5e-3)


def test_a_run_without_a_trajectory_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"recorded no trajectory.*train\.trajectory=N") as error:
        read_trajectory(tmp_path)
    assert "\n" not in str(error.value)


# --- the plane on the ravine -------------------------------------------------------------------


def test_the_plane_tells_the_ravine_story(tmp_path: Path) -> None:
    """SGD zig-zags across the valley, momentum goes along it: ravine.png, from the record."""
    steps = 150
    sgd = descend_recorded(tmp_path / "sgd", "SGD", steps, say=lambda _: None)
    momentum = descend_recorded(
        tmp_path / "momentum", "momentum (classic)", steps, say=lambda _: None
    )
    plane = trajectory_plane([sgd, momentum])
    assert sum(plane.explained) == pytest.approx(1.0)  # two weights: the plane is everything
    assert plane.explained[0] >= plane.explained[1]
    # The plane's coordinates are an isometry of the weights (up to rotation and centring).
    for recorded, path in zip((sgd, momentum), plane.paths, strict=True):
        rows = torch.stack([recorded.weights(r) for r in range(len(recorded))])
        back = plane.origin + torch.from_numpy(path).float() @ plane.directions
        assert torch.allclose(back, rows, atol=1e-4)
    sgd_cosine, momentum_cosine = (successive_cosines(path).mean() for path in plane.paths)
    assert sgd_cosine < -0.9  # across the valley and back, step after step (-0.98)
    assert momentum_cosine > 0.3  # mostly on along the valley (0.52)
    # In two dimensions the plane loses nothing: the same as in all the weights.
    assert sgd_cosine == pytest.approx(weight_space_cosines(sgd).mean(), abs=1e-3)


def test_rows_two_steps_apart_hide_a_two_step_zig_zag(tmp_path: Path) -> None:
    """What the cosine can't see: SGD's period-2 zig-zag, sampled every 2nd step, looks straight."""
    sgd = descend_recorded(tmp_path, "SGD", 150, every=2, say=lambda _: None)
    assert successive_cosines(trajectory_plane([sgd]).paths[0]).mean() > 0.99


def test_the_plane_of_a_bigger_space_finds_the_directions_travelled(tmp_path: Path) -> None:
    """Rows that move in a known 2-dimensional subspace of 5,000 weights: PCA finds it, and
    the column chunks give what one block would."""
    generator = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(5000, 2, generator=generator, dtype=torch.float64))
    t = torch.linspace(0, 1, 30, dtype=torch.float64)
    moves = torch.stack([3 * t, torch.sin(6 * t)], dim=1) @ basis.T
    start = torch.randn(5000, generator=generator)
    recorded = Recorded(tmp_path, start, np.arange(30), moves.numpy().astype(np.float16), [], [], 1)
    chunked = trajectory_plane([recorded], chunk=777)
    whole = trajectory_plane([recorded], chunk=1 << 20)
    assert sum(chunked.explained) == pytest.approx(1.0, abs=1e-5)
    projection = chunked.directions.double() @ basis  # (2, 2): a rotation if u spans the basis
    assert torch.allclose(projection @ projection.T, torch.eye(2, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(chunked.directions, whole.directions, atol=1e-5)
    assert np.allclose(chunked.paths[0], whole.paths[0], atol=1e-5)


def test_too_few_rows_for_a_plane(tmp_path: Path) -> None:
    recorded = descend_recorded(tmp_path, "SGD", steps=1, say=lambda _: None)
    with pytest.raises(ConfigError, match="2 recorded rows; a plane needs at least 3"):
        trajectory_plane([recorded])


# --- recorded by the training loop, read by `catdog landscape` ---------------------------------


def test_training_records_a_trajectory_and_a_resume_continues_it(
    demo_photos: Path, tmp_path: Path
) -> None:
    config = small_config(demo_photos, tmp_path, "train.trajectory=4")
    whole = run(config, "whole").run_dir
    part = run(with_epochs(config, 2), "part").run_dir
    assert read_trajectory(part).steps.tolist() == [0, 4, 8, 12]  # 6 steps an epoch
    resume(config, part)
    recorded, expected = read_trajectory(part), read_trajectory(whole)
    assert recorded.steps.tolist() == expected.steps.tolist() == [0, 4, 8, 12, 16, 18]
    assert torch.equal(recorded.start, expected.start)
    assert np.array_equal(np.asarray(recorded.deltas), np.asarray(expected.deltas))
    final = weights(whole)
    flat = torch.cat([final[name].reshape(-1) for name in expected.names])
    assert torch.allclose(expected.weights(-1), flat, atol=1e-3)  # the last row: last.pt


def test_off_by_default(demo_photos: Path, tmp_path: Path) -> None:
    run_dir = run(small_config(demo_photos, tmp_path, "train.epochs=1"), "plain").run_dir
    assert not (run_dir / ROWS).exists()


def comparison(demo_photos: Path, tmp_path: Path, *extra: str) -> Path:
    """`catdog compare`: SGD and momentum from one seed, recording every 2 steps."""
    settings = [
        f"data.root={demo_photos}",
        "data.image_size=16",
        "data.workers=0",
        "model.hidden=[32]",
        "train.epochs=3",
        "train.batch_size=16",
        "train.progress=false",
        "train.trajectory=2",
        *extra,
    ]
    done = catdog(
        "compare",
        REPO / "configs" / "compare.yaml",
        *(part for setting in settings for part in ("--set", setting)),
        "--grid",
        "optimizer.name=sgd,momentum",
        "--out-dir",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    return folder


def test_landscape_of_a_comparison(demo_photos: Path, tmp_path: Path) -> None:
    folder = comparison(demo_photos, tmp_path / "runs")
    out = tmp_path / "picture"
    done = catdog(
        "landscape", folder, "--out", out, "--photos", "48", "--grid", "5", "--lanczos", "6"
    )
    assert done.returncode == 0, done.stderr
    assert (out / "landscape.png").stat().st_size > 10_000
    text = (out / "landscape.txt").read_text()
    assert text in done.stdout.replace("\r", "")
    assert "plane: u₁ explains" in text and "mean cosine between successive updates" in text
    assert text.count("top λ") == 6  # start, middle, end of each run
    assert "lr above 2/λ_max at:" in text and "time:" in text
    for part in ("PCA of", "grid", "top eigenvalues"):
        assert part in done.stdout  # each part's time, as it goes

    runs = load_runs(folder)
    assert [run.label for run in runs] == ["optimizer.name=sgd", "optimizer.name=momentum"]
    assert torch.equal(runs[0].trajectory.start, runs[1].trajectory.start)  # one seed, one θ₀
    probe = make_probe(runs[0], 48, torch.device("cpu"))
    for recorded in runs:
        line = interpolate(probe, recorded.trajectory.start, recorded.final)
        at = {float(a): i for i, a in enumerate(line.alphas)}
        # α = 1 is the run's last.pt: metrics.csv's last validation loss, measured in training.
        assert line.val[at[1.0]] == pytest.approx(recorded.metrics[-1]["val_loss"], rel=1e-5)
        # α = 0 is the untrained network the seed builds, measured as training measures.
        torch.manual_seed(recorded.config.seed)
        untrained = build_model(recorded.config)
        untrained.load_state_dict(recorded.checkpoint["model"] | _parameters(untrained))
        data = prepare_data(recorded.config, progress=False)
        before = measure(
            untrained, data.images.pixels, data.images.labels, data.val_indices,
            data.mean, data.std, LOSSES[recorded.config.loss], torch.device("cpu"),
        )  # fmt: skip
        assert line.val[at[0.0]] == pytest.approx(before.loss, rel=1e-5)
        # The trajectory's last row is the final weights, to float16's precision.
        last = probe.train_loss(recorded.trajectory.weights(-1))
        assert line.train[at[1.0]] == pytest.approx(last, rel=1e-3)


def _parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_a_run_without_a_trajectory_is_refused_in_one_line(
    demo_photos: Path, tmp_path: Path
) -> None:
    run_dir = run(small_config(demo_photos, tmp_path, "train.epochs=1"), "plain").run_dir
    done = catdog("landscape", run_dir)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "recorded no trajectory" in done.stderr
    assert "train.trajectory=N" in done.stderr


def test_runs_of_different_architectures_are_refused_in_one_line(
    demo_photos: Path, tmp_path: Path
) -> None:
    for hidden in ("[32]", "[16, 8]"):
        config = small_config(
            demo_photos, tmp_path, "train.epochs=1", "train.trajectory=3",
            f"model.hidden={hidden}", "output.dir=" + str(tmp_path / "mixed"),
        )  # fmt: skip
        run(config, "net")
    done = catdog("landscape", tmp_path / "mixed")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "different architecture" in done.stderr and "model.hidden" in done.stderr


def test_batch_norm_is_measured_with_the_fixed_batch_deterministically(
    demo_photos: Path, tmp_path: Path
) -> None:
    config = small_config(demo_photos, tmp_path, "model.batch_norm=true", "train.trajectory=3")
    (recorded,) = load_runs(run(config, "bn").run_dir)
    saved = {k: v.clone() for k, v in recorded.checkpoint["model"].items()}
    probe = make_probe(recorded, 40, torch.device("cpu"))
    again = make_probe(recorded, 40, torch.device("cpu"))
    middle = recorded.trajectory.weights(len(recorded.trajectory) // 2)
    assert probe.train_loss(middle) == again.train_loss(middle) == probe.train_loss(middle)
    first = probe.curvature(middle, k=2, steps=5, probes=1)
    second = again.curvature(middle, k=2, steps=5, probes=1)
    assert (first.top, first.median) == (second.top, second.median)
    # The statistics are the fixed batch's own: a training-mode forward pass on that batch.
    network = build_model(recorded.config)
    network.load_state_dict(saved)
    torch.nn.utils.vector_to_parameters(middle, network.parameters())
    with torch.no_grad():
        expected = LOSSES[recorded.config.loss](network.train()(probe.train_x), probe.train_y)
    assert probe.train_loss(middle) == pytest.approx(float(expected), rel=1e-6)
    # ... and the run's own running averages are left as they were.
    assert all(torch.equal(saved[k], v) for k, v in recorded.checkpoint["model"].items())
