"""AUC, log-loss, calibration and mistakes against hand computations and brute force."""

import math

import numpy as np
import pytest

from catdog import classification as c

# Three cats, three dogs; one tie across the classes at 0.8.
LABELS = np.array([0, 0, 1, 1, 1, 0])
P_DOG = np.array([0.1, 0.4, 0.35, 0.8, 0.8, 0.8])


def test_auc_by_hand() -> None:
    # Dog-cat pairs won: 0.35 beats 0.1 (1); each 0.8 dog beats 0.1 and 0.4 and ties 0.8 (2.5).
    assert c.auc(LABELS, P_DOG) == pytest.approx((1 + 2.5 + 2.5) / 9)


def test_log_loss_by_hand() -> None:
    by_hand = (
        -(math.log(0.9) + math.log(0.6) + math.log(0.35) + 2 * math.log(0.8) + math.log(0.2)) / 6
    )
    assert c.log_loss(LABELS, P_DOG) == pytest.approx(by_hand, rel=1e-12)


def test_reliability_and_ece_by_hand() -> None:
    bins = c.reliability(LABELS, P_DOG)
    assert bins.count.tolist() == [0, 1, 0, 1, 1, 0, 0, 0, 3, 0]
    assert bins.mean_p_dog[8] == pytest.approx(0.8)
    assert bins.dog_fraction[8] == pytest.approx(2 / 3)
    # |0 - .1| + |1 - .35| + |0 - .4| for the single photos, 3 x |2/3 - .8| for bin 8.
    assert bins.ece == pytest.approx((0.1 + 0.65 + 0.4 + 3 * (0.8 - 2 / 3)) / 6)
    assert c.summary(LABELS, P_DOG)["ece"] == pytest.approx(bins.ece)


def test_probability_one_lands_in_the_last_bin() -> None:
    bins = c.reliability(np.array([1, 0]), np.array([1.0, 0.0]), bins=4)
    assert bins.count.tolist() == [1, 0, 0, 1]
    assert bins.ece == 0.0


def test_auc_matches_brute_force_over_pairs_and_the_roc_area() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300), 2)  # rounding makes many ties
    dogs, cats = scores[labels == 1], scores[labels == 0]
    pairs = (dogs[:, None] > cats[None, :]) + 0.5 * (dogs[:, None] == cats[None, :])
    assert c.auc(labels, scores) == pytest.approx(pairs.mean(), rel=1e-12)
    fpr, tpr = c.roc_curve(labels, scores)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    trapezoid = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert trapezoid == pytest.approx(pairs.mean(), rel=1e-12)


def test_one_class_has_no_auc_but_a_log_loss_and_ece() -> None:
    labels, scores = np.array([1, 1, 1]), np.array([0.9, 0.6, 0.2])
    assert c.auc(labels, scores) is None
    assert c.roc_curve(labels, scores)[0].size == 0
    assert c.log_loss(labels, scores) == pytest.approx(-np.log([0.9, 0.6, 0.2]).mean())
    assert not math.isnan(c.expected_calibration_error(labels, scores))


def test_certain_mistakes_cost_a_finite_loss() -> None:
    losses = c.photo_losses(np.array([1, 0]), np.array([0.0, 1.0]))
    assert np.all(np.isfinite(losses)) and losses[0] == pytest.approx(-math.log(c.LOG_EPSILON))


def test_top_losses_and_confident_mistakes() -> None:
    # Losses: cat@.1 .105, cat@.4 .51, dog@.35 1.05, dog@.8 .22, dog@.8 .22, cat@.8 1.61.
    assert c.top_losses(LABELS, P_DOG, 3).tolist() == [5, 2, 1]
    assert c.confident_mistakes(LABELS, P_DOG, true_class=0, k=5).tolist() == [5]
    assert c.confident_mistakes(LABELS, P_DOG, true_class=1, k=5).tolist() == [2]
    assert c.confident_mistakes(LABELS, P_DOG, true_class=1, k=0).tolist() == []


def test_misaligned_or_foreign_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="aligned"):
        c.auc(np.array([0, 1]), np.array([0.5]))
    with pytest.raises(ValueError, match="0 \\(cat\\) or 1"):
        c.log_loss(np.array([0, 2]), np.array([0.5, 0.5]))
