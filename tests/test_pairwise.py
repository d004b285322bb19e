"""Seed-paired differences, verdicts and rankings of the leaderboard, checked against hand computations."""
import math

import numpy as np
import pytest
from scipy import stats

from dpbench.report.frame import records_frame
from dpbench.report.pairwise import area_under_curve, compare_pair, lookup, pair_runs, paired_interval
from tests.test_records import _record


def _frame(cells: dict[tuple[str, float], dict[int, float]], fid=None):
    """Records of METHOD at ε with the given accuracy per seed (FID = 100 − 100 × accuracy unless given)."""
    records = [_record(method, epsilon, seed, (fid or {}).get((method, epsilon, seed), 100 - 100 * acc), acc)
               for (method, epsilon), seeds in cells.items() for seed, acc in seeds.items()]
    frame, direction = records_frame(records)
    return pair_runs(frame, "digits-mnist"), direction


def test_a_pairwise_interval_recomputed_by_hand_from_two_sets_of_records():
    a = {0: 0.80, 1: 0.74, 2: 0.77, 3: 0.79}
    b = {0: 0.70, 1: 0.71, 2: 0.69, 3: 0.75, 4: 0.99}  # seed 4 has no partner: it must not count
    runs, direction = _frame({("m-a", 10.0): a, ("m-b", 10.0): b})
    differences = compare_pair(runs, direction).differences
    found = lookup(differences, "m-a", "m-b", "accuracy", 10.0)
    d = np.array([a[s] - b[s] for s in range(4)])
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))  # t quantile × SD / √n
    assert found.n == 4 and found.method == "t"
    assert found.mean == pytest.approx(d.mean())
    assert (found.low, found.high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert found.verdict == "better"  # the interval [0.014, 0.111] lies above 0: higher accuracy
    # FID (lower is better) of the same runs: m-a's FID is lower, so m-a is better there too
    fid = lookup(differences, "m-a", "m-b", "fid", 10.0)
    assert fid.mean == pytest.approx(-100 * d.mean()) and fid.verdict == "better"


def test_verdicts_on_constructed_data():
    runs, direction = _frame({
        ("high", 5.0): {0: 0.90, 1: 0.91, 2: 0.92},
        ("low", 5.0): {0: 0.50, 1: 0.52, 2: 0.51},
        ("noisy", 5.0): {0: 0.99, 1: 0.60, 2: 0.95},  # mean 0.847, tied with "high" at 95%
        ("single", 5.0): {0: 0.95},
    })
    differences = compare_pair(runs, direction).differences
    acc = [d for d in differences if d.metric == "accuracy"]
    assert lookup(acc, "high", "low").verdict == "better" and lookup(acc, "low", "high").verdict == "worse"
    assert lookup(acc, "high", "noisy").verdict == "tied"
    single = lookup(acc, "single", "high")
    assert single.verdict == "n/a" and single.reason == "1 shared seed" and single.low is None
    # a flipped lookup turns the interval round
    there, back = lookup(acc, "high", "low"), lookup(acc, "low", "high")
    assert (back.low, back.high) == pytest.approx((-there.high, -there.low))


def test_ranking_groups_the_lines_tied_with_the_best_and_leaves_too_few_seeds_unranked():
    runs, direction = _frame({
        ("high", 5.0): {0: 0.90, 1: 0.91, 2: 0.92},
        ("noisy", 5.0): {0: 0.99, 1: 0.60, 2: 0.95},
        ("low", 5.0): {0: 0.50, 1: 0.52, 2: 0.51},
        ("single", 5.0): {0: 0.97},
    })
    ranking = compare_pair(runs, direction).rankings[("accuracy", 5.0)]
    # the best mean has one seed: it is unranked, and the lines with seeds are ranked among themselves
    assert ranking.unranked == {"single": "1 seed"} and ranking.ranks["single"] is None
    assert ranking.best == "high" and ranking.ranks["high"] == 1 and ranking.order[-1] == "single"
    assert ranking.top == "single" and not ranking.best_is_top  # so the page bolds no one at this ε
    runs, direction = _frame({
        ("high", 5.0): {0: 0.90, 1: 0.91, 2: 0.92},
        ("noisy", 5.0): {0: 0.99, 1: 0.60, 2: 0.95},
        ("low", 5.0): {0: 0.50, 1: 0.52, 2: 0.51},
    })
    ranking = compare_pair(runs, direction).rankings[("accuracy", 5.0)]
    assert ranking.order == ["high", "noisy", "low"]
    assert ranking.ranks == {"high": 1, "noisy": 1, "low": 3} and ranking.tied_with_best == {"noisy"}


def test_summary_mean_rank_and_area_over_the_epsilon_grid():
    runs, direction = _frame({
        ("a", 1.0): {0: 0.50, 1: 0.52}, ("a", 10.0): {0: 0.90, 1: 0.92},
        ("b", 1.0): {0: 0.30, 1: 0.31}, ("b", 10.0): {0: 0.95, 1: 0.97},
    })
    summary = compare_pair(runs, direction).summaries
    assert summary["a"].mean_rank == 1.5 and summary["b"].mean_rank == 1.5  # 1st at ε = 1, 2nd at ε = 10
    assert summary["a"].area == pytest.approx((0.51 + 0.91) / 2) and summary["a"].area_epsilons == (1.0, 10.0)
    assert area_under_curve([1.0, 5.0, 10.0], [0.5, 0.7, 0.9]) == pytest.approx(
        ((0.5 + 0.7) / 2 * 4 + (0.7 + 0.9) / 2 * 5) / 9)
    assert area_under_curve([10.0], [0.9]) is None


def test_bootstrap_from_five_paired_seeds_and_equal_differences():
    first = np.array([0.9, 0.8, 0.85, 0.88, 0.86])
    second = first - np.array([0.01, 0.03, 0.02, 0.05, 0.04])
    low, high, method = paired_interval(first, second)
    assert method == "bootstrap" and 0.01 <= low < 0.03 < high <= 0.05
    assert paired_interval(np.array([1.0, 2.0]), np.array([0.5, 1.5])) == (0.5, 0.5, "t")
