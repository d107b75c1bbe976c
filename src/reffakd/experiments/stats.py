"""Differences between methods over seeds: a 95% confidence interval and Welch's t-test.

No SciPy: Student's t distribution comes from the regularised incomplete beta function
(Numerical Recipes' continued fraction), which is exact to ~1e-10 for the degrees of freedom a
bench has (1 to a few dozen).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):  # fmt: skip
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (bisection on :func:`t_cdf`)."""
    low, high = -1e3, 1e3
    for _ in range(200):
        mid = 0.5 * (low + high)
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


@dataclass(frozen=True)
class Difference:
    """``mean`` of method − reference, its 95% interval [low, high], Welch's two-sided p, and
    how it was paired. ``verdict``: better / worse when the interval excludes 0, else tie."""

    mean: float
    low: float
    high: float
    p_value: float
    n: int
    paired: bool

    @property
    def verdict(self) -> str:
        if math.isnan(self.low):
            return "n/a"
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "tie"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Welch's t statistic, its Welch–Satterthwaite degrees of freedom and the two-sided p
    for mean(a) − mean(b); NaNs with fewer than 2 values on a side or no variance at all."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan, math.nan
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return math.nan, math.nan, math.nan
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return t, df, 2.0 * (1.0 - t_cdf(abs(t), df))


def difference(method: dict[int, float], reference: dict[int, float]) -> Difference:
    """method − reference, both keyed by seed.

    With at least 2 shared seeds (which share their data order and split) the interval is the
    paired one, mean ± t_{0.975, n−1} · sd(d) / √n over the per-seed differences d; otherwise
    Welch's. The p-value is Welch's test in both cases, as the issue tracker's protocol asks.
    """
    shared = sorted(set(method) & set(reference))
    a, b = list(method.values()), list(reference.values())
    mean = statistics.fmean(a) - statistics.fmean(b) if a and b else math.nan
    _, df, p_value = welch(a, b)
    if len(shared) >= 2:
        d = [method[s] - reference[s] for s in shared]
        if statistics.stdev(d) == 0:  # equal differences on every seed: no spread to judge by
            return Difference(statistics.fmean(d), math.nan, math.nan, p_value, len(d), True)
        half = t_quantile(0.975, len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
        centre = statistics.fmean(d)
        return Difference(centre, centre - half, centre + half, p_value, len(d), True)
    if math.isnan(df):
        return Difference(mean, math.nan, math.nan, p_value, min(len(a), len(b)), False)
    half = t_quantile(0.975, df) * math.sqrt(
        statistics.variance(a) / len(a) + statistics.variance(b) / len(b)
    )
    return Difference(mean, mean - half, mean + half, p_value, min(len(a), len(b)), False)
