"""Figures over seeds against hand-computed means, intervals and paired tests; the scoreboard's
aggregation, its sentences on significance, and stuck runs kept out of the default target."""

import math
from pathlib import Path

import pytest

from catdog.scoreboard import RunResult, markdown, score
from catdog.stats import Difference, Estimate, estimate, holm, paired_difference

# Student's t_{0.975, df} from a printed table (df = 2, 4): independent of scipy.
T_TABLE = {2: 4.303, 4: 2.776}


def test_estimate_matches_the_hand_computed_mean_std_and_interval() -> None:
    # mean 0.63; deviations -0.03, -0.01, 0.04; s² = (9 + 1 + 16)e-4 / 2 = 13e-4.
    result = estimate([0.60, 0.62, 0.67])
    s = math.sqrt(13e-4)
    margin = T_TABLE[2] * s / math.sqrt(3)
    assert result.n == 3
    assert result.mean == pytest.approx(0.63, abs=1e-12)
    assert result.std == pytest.approx(s, rel=1e-12)
    assert result.low == pytest.approx(0.63 - margin, abs=1e-4)
    assert result.high == pytest.approx(0.63 + margin, abs=1e-4)


def test_estimate_over_five_values_and_the_missing_ones_left_out() -> None:
    result = estimate([1.0, 2.0, None, 3.0, math.nan, 4.0, 5.0])
    # mean 3, s² = (4 + 1 + 0 + 1 + 4) / 4 = 2.5
    assert (result.n, result.mean) == (5, 3.0)
    assert result.half_width == pytest.approx(T_TABLE[4] * math.sqrt(2.5 / 5), abs=1e-3)


def test_one_value_has_no_interval_and_none_has_no_mean() -> None:
    one = estimate([0.7])
    assert one.mean == 0.7 and math.isnan(one.std) and math.isnan(one.half_width)
    assert estimate([None]).n == 0 and math.isnan(estimate([]).mean)


def test_paired_difference_uses_the_seeds_in_common_and_the_t_test() -> None:
    a = {0: 0.70, 1: 0.72, 2: 0.75, 3: 0.9}
    b = {0: 0.60, 1: 0.61, 2: 0.66, 7: 0.1}  # seed 3 and 7 have no partner
    result = paired_difference("a", "b", "accuracy", a, b)
    # d = 0.10, 0.11, 0.09: mean 0.10, s = 0.01, t = 0.10 / (0.01 / √3)
    assert result.difference.n == 3
    assert result.difference.mean == pytest.approx(0.10, abs=1e-12)
    assert result.difference.std == pytest.approx(0.01, rel=1e-9)
    t = 0.10 / (0.01 / math.sqrt(3))
    # With 2 degrees of freedom the t distribution's CDF is 1/2 + t / (2√(2 + t²)).
    assert result.p_value == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)


def test_paired_difference_with_unpaired_noise_is_not_significant() -> None:
    a = {0: 0.60, 1: 0.70, 2: 0.65}
    b = {0: 0.66, 1: 0.64, 2: 0.66}
    (result,) = holm([paired_difference("a", "b", "accuracy", a, b)])
    assert result.p_value > 0.5 and not result.significant


def test_holm_scales_the_sorted_p_values_and_keeps_them_monotone() -> None:
    nothing = Estimate(0, 0, 0, 0, 0)
    family = [Difference("a", "b", "m", nothing, p) for p in (0.01, 0.04, 0.03, math.nan)]
    adjusted = [d.adjusted_p for d in holm(family)]
    # sorted: 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → raised to 0.06
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adjusted[3])


# --- the scoreboard over seeds -----------------------------------------------------------------


def rows(*epochs: tuple[float, float]) -> list[dict[str, float]]:
    return [
        {
            "epoch": i,
            "train_loss": loss,
            "val_loss": loss,
            "val_accuracy": acc,
            "lr": 0.1,
            "seconds": 1.0,
            "elapsed": float(i),
        }
        for i, (loss, acc) in enumerate(epochs, start=1)
    ]


def seeded(group: str, seed: int, *epochs: tuple[float, float]) -> RunResult:
    return RunResult(
        f"{group}, seed={seed}", Path(f"{group}-{seed}"), rows(*epochs), group=group, seed=seed
    )


def test_seeds_aggregate_per_group_and_a_clear_difference_is_significant() -> None:
    accuracies = {"good": (0.70, 0.72, 0.75), "poor": (0.60, 0.61, 0.66)}
    results = [
        seeded(name, seed, (0.30, 0.5), (0.25, accuracy))
        for name, values in accuracies.items()
        for seed, accuracy in enumerate(values)
    ]
    board = score(results)
    assert [g.label for g in board.groups] == ["good", "poor"]
    best = board.groups[0].figures["best_accuracy"]
    assert best.n == 3 and best.mean == pytest.approx((0.70 + 0.72 + 0.75) / 3)
    assert best.half_width == pytest.approx(T_TABLE[2] * best.std / math.sqrt(3), abs=1e-4)
    accuracy = next(d for d in board.differences if d.metric == "best validation accuracy")
    assert accuracy.difference.mean == pytest.approx(0.10) and accuracy.significant
    text = markdown(board)
    assert "| good | 3 | 72.33% ± " in text
    assert "best validation accuracy: good − poor = +10.00 points" in text
    assert "good is better" in text


def test_summary_says_plainly_when_nothing_is_significant() -> None:
    results = [
        seeded("a", 0, (0.30, 0.60)),
        seeded("a", 1, (0.28, 0.70)),
        seeded("a", 2, (0.29, 0.65)),
        seeded("b", 0, (0.29, 0.66)),
        seeded("b", 1, (0.30, 0.64)),
        seeded("b", 2, (0.28, 0.66)),
    ]
    board = score(results)
    assert not any(d.significant for d in board.differences)
    assert "no difference between the runs is significant" in markdown(board)


def test_stuck_and_diverged_runs_do_not_set_the_default_target() -> None:
    learned = RunResult("learned", Path("a"), rows((0.30, 0.6), (0.22, 0.7)))
    slower = RunResult("slower", Path("b"), rows((0.35, 0.6), (0.27, 0.65)))
    stuck = RunResult("stuck", Path("c"), rows((0.5, 0.5), (0.5, 0.5)), stuck="stuck: ...")
    board = score([learned, slower, stuck])
    assert board.target_loss == 0.27  # the worst best of the two that learned, not 0.5
    assert [r.stuck for r in board.runs] == [False, False, True]
    assert board.runs[2].epochs_to_target is None
    assert "| stuck (stuck) |" in markdown(board)
