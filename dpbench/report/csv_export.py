"""LEADERBOARD.csv: a row per (pair, method, ε, preset, config), each metric's mean, 95% interval and seed count,
its rank at that ε; LEADERBOARD-pairwise.csv: every two methods' seed-paired difference and verdict."""
from __future__ import annotations

import csv
import io

import pandas as pd

from dpbench.report.frame import CELL_KEYS, metric_order
from dpbench.report.pairwise import PairComparison, compare_pair, pair_runs
from dpbench.report.stats import mean_interval
from dpbench.run.records import epsilon_label

KEY_COLUMNS = ["pair", "method", "epsilon", "preset", "config_hash", "config", "seeds"]
INTERVAL_FIELDS = ("mean", "ci_low", "ci_high", "n", "ci_method")  # ci_method: t, bootstrap, or none (n = 1)
EXTRA_COLUMNS = ["fid_samples", "kid_std", "kid_subset_size", "finetune_hours_mean", "finetune_device"]
RANK_METRICS = ("accuracy", "fid")
# per ranked metric: rank at that ε (empty when unranked), whether tied with the best, why unranked
RANK_FIELDS = ("rank", "tied_with_best", "unranked_reason")
VERSION_COLUMNS = ["line", "commits", "data_digests", "load"]
# the line's summary over the private ε, the same on each of its rows (empty for ε = ∞ and 0 rows' lines with none)
SUMMARY_COLUMNS = ["accuracy_mean_rank", "accuracy_area_over_epsilon", "area_epsilons"]
PAIRWISE_COLUMNS = ["pair", "epsilon", "metric", "first", "second", "shared_seeds", "mean_difference", "ci_low",
                    "ci_high", "ci_method", "verdict", "reason"]


def _number(value) -> str:
    return "" if value is None or pd.isna(value) else format(float(value), ".10g")


def _interval_cells(values: pd.Series) -> list[str]:
    interval = mean_interval(values.dropna()) if values is not None else None
    if interval is None:
        return [""] * len(INTERVAL_FIELDS)
    return [_number(interval.mean), _number(interval.low), _number(interval.high), str(interval.n), interval.method]


def _comparisons(frame: pd.DataFrame, direction: dict[str, bool]) -> dict[str, tuple[pd.DataFrame, PairComparison]]:
    return {pair: (runs, compare_pair(runs, direction))
            for pair in sorted(set(frame["pair"])) for runs in [pair_runs(frame, pair)]}


def _rank_cells(comparison: PairComparison, line: str, epsilon: float) -> list[str]:
    cells = []
    for metric in RANK_METRICS:
        ranking = comparison.rankings.get((metric, epsilon))
        if ranking is None or line not in ranking.ranks:
            cells += ["", "", ""]
            continue
        rank = ranking.ranks[line]
        cells += ["" if rank is None else str(rank), str(line in ranking.tied_with_best).lower(),
                  ranking.unranked.get(line, "")]
    return cells


def leaderboard_csv(frame: pd.DataFrame, direction: dict[str, bool]) -> str:
    metrics = metric_order(direction)
    header = (KEY_COLUMNS + [f"{m}_{field}" for m in metrics for field in INTERVAL_FIELDS] + EXTRA_COLUMNS
              + [f"{m}_{field}" for m in RANK_METRICS for field in RANK_FIELDS] + VERSION_COLUMNS + SUMMARY_COLUMNS)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    if frame.empty:
        return buffer.getvalue()
    comparisons = _comparisons(frame, direction)
    for (pair, method, preset, config_hash, epsilon), runs in frame.groupby(CELL_KEYS, sort=True):
        row = [pair, method, epsilon_label(epsilon), preset, config_hash, runs["config"].iloc[0], str(len(runs))]
        for metric in metrics:
            row += _interval_cells(runs[metric] if metric in runs else None)
        hours = runs["wall_finetune"].dropna() / 3600 if "wall_finetune" in runs else pd.Series(dtype=float)
        row += [
            "/".join(str(int(c)) for c in sorted(set(runs["fid_samples"].dropna()))) if "fid_samples" in runs else "",
            _number(runs["kid_std"].mean()) if "kid_std" in runs else "",
            "/".join(str(int(c)) for c in sorted(set(runs["kid_subset_size"].dropna())))
            if "kid_subset_size" in runs else "",
            _number(hours.mean()) if not hours.empty else "",
            "/".join(sorted(set(runs["device"]))),
        ]
        pair_frame, comparison = comparisons[pair]
        line = pair_frame.loc[runs.index, "line"].iloc[0]
        row += _rank_cells(comparison, line, epsilon)
        row += [line, "/".join(sorted(set(runs["commit"]))), "/".join(sorted(set(runs["data_digest"].astype(str)))),
                "/".join(f"{status}:{count}" for status, count in sorted(runs["load"].value_counts().items()))]
        summary = comparison.summaries.get(line)
        row += ["", "", ""] if summary is None else [
            _number(summary.mean_rank), _number(summary.area), "/".join(epsilon_label(e) for e in summary.area_epsilons)]
        writer.writerow(row)
    return buffer.getvalue()


def pairwise_csv(frame: pd.DataFrame, direction: dict[str, bool]) -> str:
    """A row per (pair, ε, metric, first, second): FIRST − SECOND on their shared seeds, the 95% interval and
    FIRST's verdict (better, worse, tied, or n/a with the reason)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PAIRWISE_COLUMNS)
    if frame.empty:
        return buffer.getvalue()
    for pair, (_, comparison) in _comparisons(frame, direction).items():
        for d in sorted(comparison.differences, key=lambda d: (d.epsilon, d.metric, d.first, d.second)):
            writer.writerow([pair, epsilon_label(d.epsilon), d.metric, d.first, d.second, d.n, _number(d.mean),
                             _number(d.low), _number(d.high), d.method, d.verdict, d.reason])
    return buffer.getvalue()
