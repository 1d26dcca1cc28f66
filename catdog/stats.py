"""Figures over seeds: mean, spread, a 95% confidence interval, and paired differences.

For n values x_1..x_n (one per seed) the mean is x̄ = Σx_i / n, the sample standard deviation
s = sqrt(Σ(x_i - x̄)² / (n - 1)), and the 95% interval x̄ ± t_{0.975, n-1} · s / √n, with t
Student's quantile: with 3 seeds t = 4.30, so an interval is wide, as it should be.

Two runs are compared seed by seed: run A and run B under seed k share the split and (for one
architecture) the initial weights, so d_k = a_k - b_k removes what the seed does to both. The
difference is significant when the paired t-test's two-sided p, Holm-corrected over all pairs
compared in one table, is below 0.05.

Student's t quantile and distribution function come from scipy.stats, a tested reference,
rather than a hand-written incomplete beta function.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats

LEVEL = 0.95
"""The confidence level of every interval here."""
ALPHA = 0.05
"""The significance level of the (Holm-corrected) paired tests."""


@dataclass(frozen=True)
class Estimate:
    """A figure over n seeds: mean, sample standard deviation and the 95% interval's ends."""

    mean: float
    std: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def t_quantile(n: int, level: float = LEVEL) -> float:
    """t_{(1+level)/2, n-1}: the multiplier of s/√n in a two-sided interval over n values."""
    return float(scipy_stats.t.ppf((1 + level) / 2, n - 1))


def estimate(values: Sequence[float | None]) -> Estimate:
    """The estimate over the values that exist (None and NaN, e.g. never reached, are left out).

    One value has no spread: std and the interval are NaN, the mean is that value.
    """
    kept = [float(v) for v in values if v is not None and not math.isnan(v)]
    n = len(kept)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0)
    mean = sum(kept) / n
    if n == 1:
        return Estimate(mean, math.nan, math.nan, math.nan, 1)
    std = math.sqrt(sum((v - mean) ** 2 for v in kept) / (n - 1))
    margin = t_quantile(n) * std / math.sqrt(n)
    return Estimate(mean, std, mean - margin, mean + margin, n)


@dataclass(frozen=True)
class Difference:
    """a - b over the seeds both have: the mean difference, its interval, and the paired test."""

    first: str
    second: str
    metric: str
    difference: Estimate
    p_value: float
    """Two-sided paired t-test, before correction (NaN under 2 pairs or zero spread)."""
    adjusted_p: float = math.nan
    """Holm-corrected over the family it was tested in."""

    @property
    def significant(self) -> bool:
        return not math.isnan(self.adjusted_p) and self.adjusted_p < ALPHA


def paired_difference(
    first: str,
    second: str,
    metric: str,
    a: dict[int, float | None],
    b: dict[int, float | None],
) -> Difference:
    """The difference a_k - b_k over the seeds k where both have a value."""
    seeds = sorted(
        k
        for k in a.keys() & b.keys()
        if a[k] is not None and b[k] is not None and not math.isnan(a[k]) and not math.isnan(b[k])
    )
    differences = [float(a[k]) - float(b[k]) for k in seeds]  # type: ignore[arg-type]
    est = estimate(differences)
    p = math.nan
    if est.n >= 2 and est.std > 0:
        statistic = est.mean / (est.std / math.sqrt(est.n))
        p = float(2 * scipy_stats.t.sf(abs(statistic), est.n - 1))
    elif est.n >= 2 and est.mean != 0:
        p = 0.0  # every seed moved by exactly the same non-zero amount
    return Difference(first, second, metric, est, p)


def holm(differences: Sequence[Difference]) -> list[Difference]:
    """Holm–Bonferroni: the i-th smallest of m p-values is scaled by (m - i), kept monotone.

    It controls the chance of any false "significant" over the whole table at ALPHA, which
    testing 15 pairs of 6 optimizers one by one would not. Untestable ones (NaN) stay NaN.
    """
    testable = sorted(
        (i for i, d in enumerate(differences) if not math.isnan(d.p_value)),
        key=lambda i: differences[i].p_value,
    )
    adjusted = [math.nan] * len(differences)
    running = 0.0
    m = len(testable)
    for rank, index in enumerate(testable):
        running = max(running, min(1.0, (m - rank) * differences[index].p_value))
        adjusted[index] = running
    return [
        Difference(d.first, d.second, d.metric, d.difference, d.p_value, adjusted[i])
        for i, d in enumerate(differences)
    ]
