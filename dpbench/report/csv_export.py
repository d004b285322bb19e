"""LEADERBOARD.csv: a row per (pair, method, ε, preset, config), each metric's mean, 95% interval and seed count."""
from __future__ import annotations

import csv
import io

import pandas as pd

from dpbench.report.frame import CELL_KEYS, metric_order
from dpbench.report.stats import mean_interval
from dpbench.run.records import epsilon_label

KEY_COLUMNS = ["pair", "method", "epsilon", "preset", "config_hash", "config", "seeds"]
INTERVAL_FIELDS = ("mean", "ci_low", "ci_high", "n", "ci_method")  # ci_method: t, bootstrap, or none (n = 1)
EXTRA_COLUMNS = ["fid_samples", "kid_std", "kid_subset_size", "finetune_hours_mean", "finetune_device"]


def _number(value) -> str:
    return "" if value is None or pd.isna(value) else format(float(value), ".10g")


def _interval_cells(values: pd.Series) -> list[str]:
    interval = mean_interval(values.dropna()) if values is not None else None
    if interval is None:
        return [""] * len(INTERVAL_FIELDS)
    return [_number(interval.mean), _number(interval.low), _number(interval.high), str(interval.n), interval.method]


def leaderboard_csv(frame: pd.DataFrame, direction: dict[str, bool]) -> str:
    metrics = metric_order(direction)
    header = KEY_COLUMNS + [f"{m}_{field}" for m in metrics for field in INTERVAL_FIELDS] + EXTRA_COLUMNS
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    if frame.empty:
        return buffer.getvalue()
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
        writer.writerow(row)
    return buffer.getvalue()
