"""Seed-paired comparisons of the methods of one pair at one ε: every two methods' metric difference on the seeds
both ran, its 95% interval, a verdict, and a ranking that groups the methods tied with the best.

A "method" here is a leaderboard line: (method, preset, config hash), labelled by the method's name alone unless it
appears with several configs."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import integrate, stats

from dpbench.report.frame import is_reference_epsilon
from dpbench.report.stats import BOOTSTRAP_FROM, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, LEVEL

LINE_KEYS = ["method", "preset", "config_hash"]


@dataclass(frozen=True)
class Difference:
    """FIRST − SECOND of METRIC on the seeds both ran; the verdict is FIRST's (better/worse/tied), "n/a" with the
    reason when fewer than two seeds are shared."""
    metric: str
    epsilon: float
    first: str
    second: str
    n: int
    mean: float | None
    low: float | None
    high: float | None
    method: str  # "t", "bootstrap" or "none"
    verdict: str
    reason: str = ""


@dataclass
class Ranking:
    """The lines of one pair at one ε for one metric, best first: rank 1 is the best mean and every line tied
    with it; a line whose comparison with its group's leader is n/a is unranked (rank None, with the reason)."""
    metric: str
    epsilon: float
    order: list[str]
    means: dict[str, float]
    ranks: dict[str, int | None] = field(default_factory=dict)
    tied_with_best: set[str] = field(default_factory=set)
    unranked: dict[str, str] = field(default_factory=dict)
    top: str | None = None  # the best mean of all lines, ranked or not

    @property
    def best_is_top(self) -> bool:
        """Whether the best ranked line also has the best mean of all (no unranked line beats it)."""
        return self.best is not None and self.best == self.top

    @property
    def best(self) -> str | None:
        """The best mean among the ranked lines."""
        return next((label for label in self.order if self.ranks.get(label) == 1), None)


def line_labels(runs: pd.DataFrame) -> pd.Series:
    """Each run's line label: the method's name, with preset, config and hash where the method has several."""
    keys = runs[LINE_KEYS].drop_duplicates()
    ambiguous = set(keys["method"][keys["method"].duplicated(keep=False)])

    def label(row) -> str:
        if row["method"] not in ambiguous:
            return row["method"]
        return f"{row['method']} ({row['preset']}, {row['config']}, {row['config_hash'][:6]})"

    return runs.apply(label, axis=1) if not runs.empty else pd.Series(dtype=str)


def pair_runs(frame: pd.DataFrame, pair: str) -> pd.DataFrame:
    """PAIR's rows of the records frame with their "line" label."""
    runs = frame[frame["pair"] == pair].copy()
    runs["line"] = line_labels(runs)
    return runs


def paired_interval(first: np.ndarray, second: np.ndarray) -> tuple[float, float, str]:
    """95% interval of the mean of FIRST − SECOND (paired by position): Student t (n − 1 dof, `ttest_rel`) below
    five pairs, the bootstrap percentile interval of the mean difference from five (the same rule as the
    leaderboard's cells). Differences that are all equal have no spread: the interval is that value."""
    differences = first - second
    n = len(differences)
    if np.ptp(differences) == 0:
        return float(differences[0]), float(differences[0]), "t" if n < BOOTSTRAP_FROM else "bootstrap"
    if n < BOOTSTRAP_FROM:
        ci = stats.ttest_rel(first, second).confidence_interval(LEVEL)
        return float(ci.low), float(ci.high), "t"
    result = stats.bootstrap((differences,), np.mean, confidence_level=LEVEL, n_resamples=BOOTSTRAP_RESAMPLES,
                             method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED))
    ci = result.confidence_interval
    return float(ci.low), float(ci.high), "bootstrap"


def compare(first: pd.Series, second: pd.Series, metric: str, epsilon: float, names: tuple[str, str],
            higher_is_better: bool) -> Difference:
    """FIRST − SECOND, both indexed by seed, on the seeds where both have a finite value."""
    both = pd.concat([first.rename("a"), second.rename("b")], axis=1, join="inner").dropna()
    both = both[np.isfinite(both["a"]) & np.isfinite(both["b"])]
    n = len(both)
    if n < 2:
        reason = "no shared seed" if n == 0 else "1 shared seed"
        mean = float(both["a"].iloc[0] - both["b"].iloc[0]) if n == 1 else None
        return Difference(metric, epsilon, *names, n, mean, None, None, "none", "n/a", reason)
    a, b = both["a"].to_numpy(dtype=float), both["b"].to_numpy(dtype=float)
    low, high, method = paired_interval(a, b)
    if low <= 0 <= high:
        verdict = "tied"
    else:
        verdict = "better" if (low > 0) == higher_is_better else "worse"
    return Difference(metric, epsilon, *names, n, float((a - b).mean()), low, high, method, verdict)


def _per_seed(runs: pd.DataFrame, metric: str) -> dict[str, pd.Series]:
    """Each line's METRIC by seed (a seed counted once)."""
    return {label: cell.groupby("seed")[metric].first() for label, cell in runs.groupby("line", sort=True)}


def pairwise(runs: pd.DataFrame, metric: str, epsilon: float, higher_is_better: bool) -> list[Difference]:
    """Every two lines' seed-paired difference at EPSILON, each unordered pair once (labels in sorted order)."""
    if metric not in runs:
        return []
    values = _per_seed(runs[(runs["epsilon"] == epsilon) & runs[metric].notna()], metric)
    labels = sorted(values)
    return [compare(values[a], values[b], metric, epsilon, (a, b), higher_is_better)
            for i, a in enumerate(labels) for b in labels[i + 1:]]


def lookup(differences: list[Difference], first: str, second: str, metric: str | None = None,
           epsilon: float | None = None) -> Difference | None:
    """FIRST vs SECOND (of METRIC at EPSILON, where given) from the list, turned round when it was computed the
    other way."""
    for d in differences:
        if (metric is not None and d.metric != metric) or (epsilon is not None and d.epsilon != epsilon):
            continue
        if (d.first, d.second) == (first, second):
            return d
        if (d.first, d.second) == (second, first):
            flipped = {"better": "worse", "worse": "better"}.get(d.verdict, d.verdict)
            return Difference(d.metric, d.epsilon, first, second, d.n, None if d.mean is None else -d.mean,
                              None if d.high is None else -d.high, None if d.low is None else -d.low, d.method,
                              flipped, d.reason)
    return None


def rank(runs: pd.DataFrame, metric: str, epsilon: float, higher_is_better: bool,
         differences: list[Difference]) -> Ranking:
    """Rank the lines at EPSILON. A line with fewer than two seeds is left unranked. Of the others, the best mean
    leads group 1 with every line tied with it; the best of the rest leads the next group, and so on. A group's
    rank is 1 + the lines in the groups before it (competition ranking). A line whose comparison with a leader is
    n/a (fewer than two shared seeds) is left unranked, with the reason."""
    cell = runs[(runs["epsilon"] == epsilon) & runs[metric].notna()] if metric in runs else runs.iloc[0:0]
    means = cell.groupby("line")[metric].mean().to_dict()
    seeds = cell.groupby("line")["seed"].nunique().to_dict()
    order = sorted(means, key=lambda label: (-means[label] if higher_is_better else means[label], label))
    ranking = Ranking(metric, epsilon, [label for label in order if seeds[label] >= 2], means,
                      top=order[0] if order else None)
    ranking.unranked = {label: f"{seeds[label]} seed" for label in order if seeds[label] < 2}
    remaining, placed = list(ranking.order), 0
    while remaining:
        leader, group = remaining[0], [remaining[0]]
        for other in remaining[1:]:
            verdict = lookup(differences, other, leader)
            if verdict is None or verdict.verdict == "n/a":
                ranking.unranked[other] = f"{verdict.reason if verdict else 'no comparison'} with {leader}"
            elif verdict.verdict == "tied":
                group.append(other)
        for label in group:
            ranking.ranks[label] = placed + 1
            if leader == ranking.order[0] and label != leader:
                ranking.tied_with_best.add(label)
        placed += len(group)
        remaining = [label for label in remaining if label not in group and label not in ranking.unranked]
    ranking.order += [label for label in order if label not in ranking.order]
    for label in ranking.unranked:
        ranking.ranks[label] = None
    return ranking


@dataclass(frozen=True)
class LineSummary:
    """One line over the private ε of its pair: the mean of its accuracy ranks, and the area under its
    accuracy–ε curve (trapezoid over the ε it ran) divided by that ε range, i.e. its mean accuracy over the range."""
    line: str
    mean_rank: float | None
    ranked_at: tuple[float, ...]
    area: float | None
    area_epsilons: tuple[float, ...]


def area_under_curve(epsilons: list[float], values: list[float]) -> float | None:
    """Trapezoid area of VALUES over EPSILONS (linear ε), divided by the ε range; None below two ε."""
    if len(epsilons) < 2:
        return None
    order = np.argsort(epsilons)
    x, y = np.asarray(epsilons, dtype=float)[order], np.asarray(values, dtype=float)[order]
    return float(integrate.trapezoid(y, x) / (x[-1] - x[0]))


def summaries(runs: pd.DataFrame, rankings: list[Ranking], metric: str = "accuracy") -> dict[str, LineSummary]:
    """Each line's LineSummary from the rankings of METRIC and its mean METRIC at each private ε."""
    out = {}
    private = runs[~runs["epsilon"].map(is_reference_epsilon)]
    for label, cell in private.groupby("line", sort=True):
        ranked = [(r.epsilon, r.ranks[label]) for r in rankings
                  if r.metric == metric and r.ranks.get(label) is not None]
        means = cell.groupby("epsilon")[metric].mean().dropna() if metric in cell else pd.Series(dtype=float)
        area = area_under_curve(list(means.index), list(means.values))
        out[label] = LineSummary(label, float(np.mean([r for _, r in ranked])) if ranked else None,
                                 tuple(e for e, _ in ranked), area, tuple(means.index) if area is not None else ())
    return out


@dataclass
class PairComparison:
    """Everything the leaderboard and the CSV show of one pair: the differences, rankings and line summaries."""
    differences: list[Difference]
    rankings: dict[tuple[str, float], Ranking]
    summaries: dict[str, LineSummary]


def compare_pair(runs: pd.DataFrame, direction: dict[str, bool], metrics=("accuracy", "fid")) -> PairComparison:
    """RUNS: one pair's rows of the records frame with a "line" column. Private ε only: ε = ∞ and ε = 0 are
    references, not competitors."""
    private = runs[~runs["epsilon"].map(is_reference_epsilon)]
    differences, rankings = [], {}
    for metric in metrics:
        if metric not in private or metric not in direction:
            continue
        for epsilon in sorted(set(private["epsilon"])):
            found = pairwise(private, metric, epsilon, direction[metric])
            differences += found
            if private.loc[private["epsilon"] == epsilon, metric].notna().any():
                rankings[(metric, epsilon)] = rank(private, metric, epsilon, direction[metric], found)
    return PairComparison(differences, rankings, summaries(runs, list(rankings.values())))

