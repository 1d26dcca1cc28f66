"""How good a set of P(dog) scores is: AUC, log-loss, calibration, and the worst mistakes.

Plain numpy over two aligned arrays: `labels` (0 = cat, 1 = dog) and `p_dog` (the network's
P(dog) per photo). Nothing here knows about models, photos or files.
"""

from dataclasses import dataclass

import numpy as np

# Probabilities are clipped to [LOG_EPSILON, 1 - LOG_EPSILON] before a log: a float32 P(dog)
# of exactly 0 or 1 would otherwise cost an infinite loss.
LOG_EPSILON = 1e-7
CALIBRATION_BINS = 10


def _arrays(labels: np.ndarray, p_dog: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    p = np.asarray(p_dog, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} labels but {len(p)} scores: they must be aligned")
    if len(y) and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (cat) or 1 (dog)")
    return y, p


def photo_losses(labels: np.ndarray, p_dog: np.ndarray) -> np.ndarray:
    """Each photo's log-loss, −log P(its true class): −log p for a dog, −log(1 − p) for a cat."""
    y, p = _arrays(labels, p_dog)
    p = np.clip(p, LOG_EPSILON, 1 - LOG_EPSILON)
    return -np.where(y == 1, np.log(p), np.log1p(-p))


def log_loss(labels: np.ndarray, p_dog: np.ndarray) -> float:
    """Mean log-loss (binary cross-entropy), the Kaggle competition's score; nan if empty."""
    losses = photo_losses(labels, p_dog)
    return float(losses.mean()) if len(losses) else float("nan")


def auc(labels: np.ndarray, p_dog: np.ndarray) -> float | None:
    """Area under the ROC curve: P(a random dog scores above a random cat), ties counting ½.

    Computed from ranks (Mann–Whitney U): AUC = (R_dog − n_dog(n_dog + 1)/2) / (n_dog · n_cat),
    R_dog the sum of the dogs' ranks among all scores, tied scores sharing their mean rank.
    None when one class is absent: the ratio is then 0/0.
    """
    y, p = _arrays(labels, p_dog)
    dogs, cats = int(y.sum()), int(len(y) - y.sum())
    if dogs == 0 or cats == 0:
        return None
    ranks = _mean_ranks(p)
    return float((ranks[y == 1].sum() - dogs * (dogs + 1) / 2) / (dogs * cats))


def _mean_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of `values`, tied values all taking the mean of the ranks they span."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    # Start of each run of equal values, and the run every sorted position belongs to.
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    run_rank = (starts + 1 + ends) / 2  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def roc_curve(labels: np.ndarray, p_dog: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0,0) to (1,1).

    A photo is called a dog when its score is ≥ the threshold; thresholds run from above the
    highest score down to the lowest. Empty arrays when one class is absent.
    """
    y, p = _arrays(labels, p_dog)
    dogs, cats = int(y.sum()), int(len(y) - y.sum())
    if dogs == 0 or cats == 0:
        return np.empty(0), np.empty(0)
    order = np.argsort(-p, kind="stable")
    p, y = p[order], y[order]
    last_of_tie = np.r_[p[1:] != p[:-1], True]
    tp = np.cumsum(y)[last_of_tie]
    fp = np.cumsum(1 - y)[last_of_tie]
    return np.r_[0.0, fp / cats], np.r_[0.0, tp / dogs]


@dataclass(frozen=True)
class Reliability:
    """Photos binned by P(dog) in equal-width bins over [0, 1] (the last bin includes 1).

    For each bin: how many photos, their mean P(dog) (nan when empty) and the fraction of them
    that are dogs (nan when empty). A calibrated network has fraction ≈ mean P(dog) in every bin.
    """

    edges: np.ndarray  # (bins + 1,)
    count: np.ndarray  # (bins,) int
    mean_p_dog: np.ndarray  # (bins,)
    dog_fraction: np.ndarray  # (bins,)

    @property
    def ece(self) -> float:
        """Expected calibration error, Σ_b (n_b / n) |dog fraction_b − mean P(dog)_b|."""
        total = int(self.count.sum())
        if total == 0:
            return float("nan")
        used = self.count > 0
        gaps = np.abs(self.dog_fraction[used] - self.mean_p_dog[used])
        return float((self.count[used] / total * gaps).sum())


def reliability(labels: np.ndarray, p_dog: np.ndarray, bins: int = CALIBRATION_BINS) -> Reliability:
    if bins < 1:
        raise ValueError(f"bins={bins}: need at least 1")
    y, p = _arrays(labels, p_dog)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.floor(p * bins).astype(np.int64), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(which, weights=p, minlength=bins) / count
        fraction = np.bincount(which, weights=y, minlength=bins) / count
    return Reliability(edges, count, mean_p, fraction)


def expected_calibration_error(
    labels: np.ndarray, p_dog: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    return reliability(labels, p_dog, bins).ece


def top_losses(labels: np.ndarray, p_dog: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k photos with the highest loss, highest first (ties: earlier first)."""
    losses = photo_losses(labels, p_dog)
    return np.argsort(-losses, kind="stable")[:k]


def confident_mistakes(
    labels: np.ndarray, p_dog: np.ndarray, true_class: int, k: int
) -> np.ndarray:
    """Indices of up to k photos of `true_class` called the other class, most confident first.

    A cat (0) is a mistake when P(dog) ≥ 0.5, a dog (1) when P(dog) < 0.5, the same rule the
    labels come from; confidence is the probability of the wrong class.
    """
    y, p = _arrays(labels, p_dog)
    wrong_confidence = p if true_class == 0 else 1 - p
    called = (p >= 0.5) if true_class == 0 else (p < 0.5)
    rows = np.flatnonzero((y == true_class) & called)
    return rows[np.argsort(-wrong_confidence[rows], kind="stable")][:k]


def summary(labels: np.ndarray, p_dog: np.ndarray) -> dict[str, float | None]:
    """auc (None with one class), log_loss and ece, as `evaluate --json` reports them."""
    return {
        "auc": auc(labels, p_dog),
        "log_loss": log_loss(labels, p_dog),
        "ece": expected_calibration_error(labels, p_dog),
    }
