"""The 95% confidence interval of a mean over seeds, as the leaderboard's cells, plots and CSV show it."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
BOOTSTRAP_FROM = 5  # below five seeds a bootstrap resamples too few values to mean anything; the t-interval is used
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # a fixed stream: the committed page must regenerate to the same text


@dataclass(frozen=True)
class Interval:
    """The mean of n values and its 95% interval; low/high are None when n = 1 (there is no spread to estimate)."""

    mean: float
    n: int
    low: float | None = None
    high: float | None = None
    method: str = "none"  # "t", "bootstrap" or "none" (n = 1)

    @property
    def half_width(self) -> float | None:
        """± of a t-interval; for a (possibly asymmetric) bootstrap interval, the larger side."""
        if self.low is None:
            return None
        return max(self.mean - self.low, self.high - self.mean)


def mean_interval(values) -> Interval | None:
    """Student t-interval (n − 1 degrees of freedom) for 2 ≤ n < 5, bootstrap percentile interval of the mean for
    n ≥ 5; None for no finite values."""
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(data)
    if n == 0:
        return None
    mean = float(data.mean())
    if n == 1:
        return Interval(mean, 1)
    if n < BOOTSTRAP_FROM:
        half = float(stats.t.ppf((1 + LEVEL) / 2, n - 1) * data.std(ddof=1) / math.sqrt(n))
        return Interval(mean, n, mean - half, mean + half, "t")
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = data[rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))].mean(axis=1)
    low, high = np.quantile(means, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Interval(mean, n, float(low), float(high), "bootstrap")


def format_interval(interval: Interval | None, fmt: str, *, with_n: bool = True) -> str:
    """"71.00% ± 9.14% (n = 3)" for a t-interval, "71.00% [65.1%, 76.2%] (n = 6)" for a bootstrap one,
    "59.50% (n = 1)" for a single seed; "–" for none."""
    if interval is None:
        return "–"
    text = format(interval.mean, fmt)
    if interval.method == "t":
        text += f" ± {format(interval.half_width, fmt)}"
    elif interval.method == "bootstrap":
        text += f" [{format(interval.low, fmt)}, {format(interval.high, fmt)}]"
    return f"{text} (n = {interval.n})" if with_n else text
