"""ZCA whitening (`data.normalization: zca`): the statistics against numpy in float64, the
fixed input layer, and a run that carries its whitening into evaluation and resume."""

from pathlib import Path

import numpy as np
import pytest
import torch

from catdog.batches import channel_stats, to_inputs, zca_whitening
from catdog.config import ConfigError, load_config
from catdog.evaluate import evaluate
from catdog.experiment import run
from catdog.model import MLP, Whitening
from catdog.runs import read_metrics
from tests.helpers import assert_resume_matches_whole, small_config


def correlated_pixels(count: int, seed: int = 0) -> np.ndarray:
    """uint8 (N, 3, 4, 4) photos whose pixels are strongly correlated, as in real photos: a
    smooth random field per photo plus a little independent noise (48 features, N >> 48)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(128, 40, (count, 3, 1, 1)) + rng.normal(0, 25, (count, 1, 4, 1))
    pixels = base + rng.normal(0, 10, (count, 3, 4, 4))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def numpy_zca(x: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """The reference: float64 numpy, straight from the definition."""
    mean = x.mean(axis=0)
    covariance = np.cov(x, rowvar=False, ddof=0)
    eigenvalues, vectors = np.linalg.eigh(covariance)
    return mean, vectors @ np.diag(1 / np.sqrt(eigenvalues + epsilon)) @ vectors.T


def test_zca_matches_numpy_float64_across_chunks() -> None:
    pixels = correlated_pixels(1300)  # more rows than one read chunk (512)
    rows = np.arange(100, 1300)
    mean, std = channel_stats(pixels, rows)
    x = to_inputs(pixels[rows], mean, std).double().numpy()
    expected_mean, expected_matrix = numpy_zca(x, 0.1)
    feature_mean, matrix = zca_whitening(pixels, rows[::-1], mean, std, 0.1)  # any row order
    np.testing.assert_allclose(feature_mean, expected_mean, atol=1e-5)
    np.testing.assert_allclose(matrix, expected_matrix, atol=1e-4)
    np.testing.assert_array_equal(matrix, matrix.T)


def test_zca_output_has_the_closed_form_covariance() -> None:
    """Cov((x - μ)W) = U diag(λ / (λ + ε)) Uᵀ: ~identity for tiny ε, shrunk for a large one."""
    pixels = correlated_pixels(2000, seed=1)
    rows = np.arange(2000)
    mean, std = channel_stats(pixels, rows)
    x = to_inputs(pixels, mean, std).double()
    covariance = torch.cov(x.T, correction=0)
    eigenvalues, vectors = torch.linalg.eigh(covariance)
    for epsilon in (1e-6, 1.0):
        feature_mean, matrix = (
            torch.from_numpy(a).double() for a in zca_whitening(pixels, rows, mean, std, epsilon)
        )
        white = (x - feature_mean) @ matrix
        expected = vectors @ torch.diag(eigenvalues / (eigenvalues + epsilon)) @ vectors.T
        torch.testing.assert_close(torch.cov(white.T, correction=0), expected, atol=2e-4, rtol=0)
        torch.testing.assert_close(
            white.mean(0), torch.zeros(48, dtype=torch.float64), atol=1e-5, rtol=0
        )
    assert float(eigenvalues.max() / eigenvalues.min()) > 100  # the input really was correlated


def test_zca_refuses_bad_input() -> None:
    pixels = correlated_pixels(10)
    mean, std = channel_stats(pixels, np.arange(10))
    with pytest.raises(ValueError, match="epsilon=0"):
        zca_whitening(pixels, np.arange(10), mean, std, 0.0)
    with pytest.raises(ValueError, match="no rows"):
        zca_whitening(pixels, np.array([], dtype=np.int64), mean, std, 0.1)


def test_whitening_layer_is_the_affine_map_and_checks_shapes() -> None:
    generator = torch.Generator().manual_seed(0)
    layer = Whitening(5)
    x = torch.randn(7, 5, generator=generator)
    torch.testing.assert_close(layer(x), x)  # identity until set
    mean, matrix = torch.randn(5, generator=generator), torch.randn(5, 5, generator=generator)
    layer.set(mean, matrix)
    torch.testing.assert_close(layer(x), (x - mean) @ matrix)
    with pytest.raises(ValueError, match="5 features"):
        layer.set(torch.zeros(4), torch.eye(4))


@pytest.mark.parametrize("members", [1, 3])
def test_a_whitened_network_saves_and_restores_its_whitening(members: int) -> None:
    torch.manual_seed(0)
    model = MLP(12, [8], batch_norm=True, members=members, whiten=True)
    model.whitening.set(torch.randn(12), torch.randn(12, 12))
    assert set(model.parameters()).isdisjoint(model.whitening.buffers())  # never trained
    restored = MLP(12, [8], batch_norm=True, members=members, whiten=True)
    restored.load_state_dict(model.state_dict())
    x = torch.randn(5, 12)
    model.eval(), restored.eval()
    torch.testing.assert_close(restored(x), model(x))
    plain = MLP(12, [8], batch_norm=True, members=members)
    plain.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith("whitening")}
    )
    plain.eval()
    # The network proper sees the whitened photo: plain(whitened x) == whitened network(x).
    torch.testing.assert_close(plain(model.whitening(x)), model(x))


def test_zca_run_evaluates_as_it_validated_and_resumes(demo_photos: Path, tmp_path: Path) -> None:
    config = small_config(
        demo_photos, tmp_path, "data.normalization=zca", "loss=bce", "optimizer.lr=0.01"
    )
    summary = run(config, "zca")
    rows = read_metrics(summary.run_dir / "metrics.csv")
    best = max(rows, key=lambda row: row["val_accuracy"])
    checkpoint = torch.load(summary.run_dir / "best.pt", weights_only=True)
    matrix = checkpoint["model"]["whitening.matrix"]
    assert not torch.equal(matrix, torch.eye(len(matrix)))  # the training split's, not identity
    measured, _ = evaluate(summary.run_dir, progress=False)
    assert measured.accuracy == pytest.approx(best["val_accuracy"], abs=5e-5)  # metrics.csv: 1e-4
    assert_resume_matches_whole(
        config.model_copy(
            update={"output": config.output.model_copy(update={"dir": str(tmp_path / "resume")})}
        ),
        stop_after=1,
    )


def test_zca_too_many_features_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match=r"data: normalization=zca whitens 12,288 features"):
        load_config(None, ["data.normalization=zca", "data.image_size=64"])
    assert load_config(
        None, ["data.normalization=zca", "data.image_size=64", "data.grayscale=true"]
    )
