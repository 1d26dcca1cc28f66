"""`ewa`: the exponentially weighted average, against closed forms and exact rational sums."""

import re
from fractions import Fraction

import pytest
import torch

from catdog.optim import ewa


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.98])
def test_constant_sequence_closed_form(beta: float) -> None:
    """v_t = c(1-βᵗ) from v_0 = 0; bias correction divides that out and leaves c every time."""
    c, n = 3.5, 200
    averages = ewa([c] * n, beta)
    corrected = ewa([c] * n, beta, bias_correction=True)
    for t in range(1, n + 1):
        assert averages[t - 1] == pytest.approx(c * (1 - beta**t), rel=1e-13)
        assert corrected[t - 1] == pytest.approx(c, rel=1e-13)


@pytest.mark.parametrize("bias_correction", [False, True])
def test_matches_the_exact_weighted_sum(bias_correction: bool) -> None:
    """v_t = (1-β) Σ_{k≤t} β^(t-k) x_k, summed in exact rational arithmetic as the reference."""
    beta = 0.9
    generator = torch.Generator().manual_seed(3)
    values = torch.randn(60, generator=generator, dtype=torch.float64).tolist()
    exact_beta = Fraction(beta)  # the binary value the float actually holds
    averages = ewa(values, beta, bias_correction)
    for t in range(1, len(values) + 1):
        exact = (1 - exact_beta) * sum(
            exact_beta ** (t - k) * Fraction(values[k - 1]) for k in range(1, t + 1)
        )
        if bias_correction:
            exact /= 1 - exact_beta**t
        assert averages[t - 1] == pytest.approx(float(exact), rel=1e-12, abs=1e-14)


def test_tensor_is_averaged_along_its_first_dimension() -> None:
    generator = torch.Generator().manual_seed(4)
    series = torch.randn(50, 3, generator=generator, dtype=torch.float64)
    averaged = ewa(series, 0.8, bias_correction=True)
    assert isinstance(averaged, torch.Tensor)
    assert averaged.shape == series.shape
    for column in range(3):
        expected = ewa(series[:, column].tolist(), 0.8, bias_correction=True)
        torch.testing.assert_close(
            averaged[:, column], torch.tensor(expected, dtype=torch.float64), rtol=1e-14, atol=0
        )


def test_integer_tensor_gives_a_floating_tensor() -> None:
    averaged = ewa(torch.tensor([2, 2, 2]), 0.5)
    assert averaged.dtype == torch.get_default_dtype()
    assert averaged.tolist() == [1.0, 1.5, 1.75]


def test_beta_zero_returns_the_sequence_and_empty_stays_empty() -> None:
    assert ewa([1.0, -2.0, 4.0], 0.0) == [1.0, -2.0, 4.0]
    assert ewa([], 0.9) == []
    assert ewa(torch.empty(0, 2), 0.9).shape == (0, 2)


@pytest.mark.parametrize(
    ("beta", "message"),
    [
        (1.0, "Invalid beta value: 1.0 (must be in [0, 1))"),
        (-0.1, "Invalid beta value: -0.1 (must be in [0, 1))"),
        (float("nan"), "Invalid beta value: nan"),
    ],
)
def test_bad_beta_is_rejected(beta: float, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ewa([1.0, 2.0], beta)


def test_scalar_tensor_is_rejected() -> None:
    with pytest.raises(ValueError, match="0-dimensional"):
        ewa(torch.tensor(1.0), 0.9)
