"""Drift statistics on binned counts (numpy only; rows are features, columns are bins).

- PSI (population stability index): ``sum((p - q) * ln(p / q))`` over bins, with proportions floored
  at ``EPS`` so that a bin empty on one side counts without dividing by zero. Rules of thumb: below
  0.1 stable, 0.1-0.25 moderate, above 0.25 a significant shift.
- Binned two-sample Kolmogorov-Smirnov D: the largest gap between the two cumulative distributions at
  the bin edges; its critical value at level ``alpha`` is ``c * sqrt((n + m) / (n m))`` with
  ``c = sqrt(-ln(alpha / 2) / 2)``, Bonferroni-corrected over the features tested together.
- Two-sample chi-square on class counts (a 2 x classes contingency table), with its critical value by
  the Wilson-Hilferty approximation (no scipy).
- Wilson score interval for a proportion (online accuracy, error rates in rollout reports): unlike the
  normal approximation it stays inside [0, 1] and is honest at small counts and rates near 0 or 1.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ALPHA", "EPS", "chi2_critical", "chi2_two_sample", "ks", "ks_critical", "psi", "wilson"]

EPS = 1e-4
ALPHA = 0.05
_Z = {0.05: 1.6448536269514722, 0.01: 2.3263478740408408}  # one-sided normal quantiles
_Z2 = {0.05: 1.959963984540054, 0.01: 2.5758293035489004}  # two-sided


def _proportions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum(axis=-1, keepdims=True)
    return counts / np.maximum(total, 1)


def psi(current: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """PSI per row of two count arrays of the same shape ([features, bins] or [bins])."""
    p = np.maximum(_proportions(current.astype(np.float64)), EPS)
    q = np.maximum(_proportions(reference.astype(np.float64)), EPS)
    return ((p - q) * np.log(p / q)).sum(axis=-1)


def ks(current: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Binned KS D per row."""
    c = np.cumsum(_proportions(current.astype(np.float64)), axis=-1)
    r = np.cumsum(_proportions(reference.astype(np.float64)), axis=-1)
    return np.abs(c - r).max(axis=-1)


def ks_critical(n: int, m: int, tests: int = 1, alpha: float = ALPHA) -> float:
    """D above which the two samples (n and m rows) differ at level ``alpha`` over ``tests`` features."""
    if n <= 0 or m <= 0:
        return math.inf
    c = math.sqrt(-0.5 * math.log(alpha / (2 * max(tests, 1))))
    return c * math.sqrt((n + m) / (n * m))


def chi2_two_sample(current: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """(statistic, degrees of freedom) for two class-count vectors; classes empty on both sides are left out."""
    table = np.stack([current, reference]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum()), table.shape[1] - 1


def chi2_critical(df: int, alpha: float = ALPHA) -> float:
    """The chi-square quantile 1 - alpha (Wilson-Hilferty; within 1% for df >= 3)."""
    if df <= 0:
        return math.inf
    z = _Z.get(alpha)
    if z is None:
        raise ValueError(f"alpha {alpha}: expected one of {sorted(_Z)}")
    k = 2.0 / (9.0 * df)
    return df * (1.0 - k + z * math.sqrt(k)) ** 3


def wilson(successes: int, trials: int, alpha: float = ALPHA) -> tuple[float, float]:
    """The Wilson score interval (two-sided, level 1 - alpha) for ``successes`` out of ``trials``;
    (0.0, 1.0) when there are no trials."""
    if trials <= 0:
        return 0.0, 1.0
    z = _Z2.get(alpha)
    if z is None:
        raise ValueError(f"alpha {alpha}: expected one of {sorted(_Z2)}")
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= trials else min(1.0, centre + half)
    return low, high
