"""`dpbench compare`: place one finished run against a folder of records (by default the committed leaderboard's):
where it ranks at its pair and ε, its difference to each method there, and whether either side is stale (other
code, other data digest)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from dpbench.report.frame import is_leaderboard_record, records_frame
from dpbench.report.pairwise import line_labels
from dpbench.report.recheck import privacy_problem, trusted
from dpbench.report.stats import mean_interval
from dpbench.run.records import RECORD_NAME, epsilon_label, migrate_record, read_records

METRICS = ("accuracy", "fid")


def read_run(run_dir: Path) -> dict:
    """RUN_DIR's record, which must be a completed run whose ε recomputes from its own ledger."""
    path = Path(run_dir) / RECORD_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no {RECORD_NAME}: give the folder of one run "
                                "(pair/method/preset-hash/eps<ε>/seed<seed>)")
    record = migrate_record(json.loads(path.read_text()))
    record["_path"] = str(path)
    if not is_leaderboard_record(record):
        raise ValueError(f"{path} is not a completed run (status {record.get('status')!r}, kind "
                         f"{record.get('kind', 'run')!r}); only completed runs can be compared")
    problem = privacy_problem(record)
    if problem:
        raise ValueError(f"{path}: its ε does not recompute from its own ledger ({problem})")
    return record


def _same_run(row: pd.Series, run: dict) -> bool:
    return (row["method"], row["preset"], row["config_hash"], row["seed"]) == (
        run["method"]["name"], run["preset"], run["config_hash"], run["seed"])


def _difference(value: float | None, seeds: pd.Series, seed: int, higher_is_better: bool) -> dict:
    """The run's VALUE minus the line's mean over SEEDS, with the line's 95% interval of that mean carried over
    (the run is one seed: its own spread is not in the interval), and the seed-paired difference where the line
    ran the run's seed."""
    interval = mean_interval(seeds.dropna())
    out = {"seeds": 0 if interval is None else interval.n, "line_mean": None, "difference": None, "ci_low": None,
           "ci_high": None, "ci_method": "none", "verdict": "n/a", "same_seed_difference": None}
    if interval is None or value is None:
        return out
    out.update(line_mean=interval.mean, difference=value - interval.mean, ci_method=interval.method)
    if seed in seeds.index and pd.notna(seeds[seed]):
        out["same_seed_difference"] = value - float(seeds[seed])
    if interval.low is None:
        out["verdict"] = "n/a (the line has 1 seed)"
        return out
    out.update(ci_low=value - interval.high, ci_high=value - interval.low)
    if out["ci_low"] <= 0 <= out["ci_high"]:
        out["verdict"] = "within"
    else:
        out["verdict"] = "better" if (out["ci_low"] > 0) == higher_is_better else "worse"
    return out


def _stale(cell: pd.DataFrame, commit: str, digest: str) -> list[str]:
    reasons = []
    commits = sorted(set(cell["commit"]))
    if commits != [commit]:
        reasons.append(f"other code: commit(s) {', '.join(commits)}, the run {commit}")
    digests = sorted(set(cell["data_digest"].astype(str)))
    if digests != [digest]:
        reasons.append(f"other data digest: {', '.join(digests)}, the run {digest}")
    return reasons


def compare_run(run_dir: Path, against: Path) -> dict:
    """The comparison of RUN_DIR's run with AGAINST's records of its pair and ε, as plain data (`--json`)."""
    run = read_run(run_dir)
    if not Path(against).is_dir():
        raise FileNotFoundError(f"--against {against} is not a folder of records")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        others = trusted(read_records(Path(against)))
    left_out = [str(w.message) for w in caught if "left out" in str(w.message)]
    own, direction = records_frame([run])
    mine = own.iloc[0]
    frame, other_direction = records_frame(others)
    direction = {**other_direction, **direction}
    if not frame.empty:
        frame = frame[(frame["pair"] == mine["pair"]) & (frame["epsilon"] == mine["epsilon"])]
        frame = frame[[not _same_run(row, run) for _, row in frame.iterrows()]]
    result = {
        "run": {"path": str(Path(run_dir)), "pair": mine["pair"], "method": mine["method"], "preset": mine["preset"],
                "config_hash": mine["config_hash"], "epsilon": epsilon_label(mine["epsilon"]), "seed": int(mine["seed"]),
                "commit": mine["commit"], "data_digest": mine["data_digest"],
                **{m: _value(mine, m) for m in METRICS}},
        "against": str(against), "left_out": left_out, "rank": {}, "differences": [], "stale": [],
    }
    if frame.empty:
        return result
    frame = frame.assign(line=line_labels(frame))
    for metric in METRICS:
        value = _value(mine, metric)
        if value is None or metric not in frame or metric not in direction:
            continue
        better = direction[metric]
        means = frame.dropna(subset=[metric]).groupby("line")[metric].mean()
        ahead = int(((means > value) if better else (means < value)).sum())
        result["rank"][metric] = {"rank": ahead + 1, "of": len(means) + 1}
        for line in sorted(means.index):
            seeds = frame[frame["line"] == line].groupby("seed")[metric].first()
            result["differences"].append({"line": line, "metric": metric,
                                          **_difference(value, seeds, int(mine["seed"]), better)})
    for line, cell in frame.groupby("line", sort=True):
        reasons = _stale(cell, mine["commit"], str(mine["data_digest"]))
        if reasons:
            result["stale"].append({"line": line, "reasons": reasons})
    return result


def _value(row: pd.Series, metric: str) -> float | None:
    value = row.get(metric)
    return None if value is None or pd.isna(value) else float(value)


def _signed(value: float | None, metric: str) -> str:
    if value is None:
        return "–"
    return format(value * (100 if metric == "accuracy" else 1), "+.1f")


def comparison_text(result: dict) -> str:
    """The comparison for a terminal: the run, its rank, a table of differences, the stale lines."""
    run = result["run"]
    lines = [f"{run['method']} ({run['preset']}, {run['config_hash']}) on {run['pair']} at ε = {run['epsilon']}, "
             f"seed {run['seed']}, commit {run['commit']}, against {result['against']}"]
    for metric in METRICS:
        if metric in result["rank"]:
            rank = result["rank"][metric]
            shown = _signed(run[metric], metric).lstrip("+")
            lines.append(f"  {metric}: {shown}{'%' if metric == 'accuracy' else ''}, rank {rank['rank']} of "
                         f"{rank['of']} (by the other lines' means)")
    if not result["differences"]:
        lines.append(f"  no records of {run['pair']} at ε = {run['epsilon']} there to compare with")
    else:
        body = [[d["line"], d["metric"], d["seeds"], _signed(d["difference"], d["metric"]),
                 "–" if d["ci_low"] is None else
                 f"[{_signed(d['ci_low'], d['metric'])}, {_signed(d['ci_high'], d['metric'])}]",
                 _signed(d["same_seed_difference"], d["metric"]), d["verdict"]] for d in result["differences"]]
        lines += ["", tabulate(body, headers=["line", "metric", "seeds", "run − mean", "95% CI", "same seed",
                                              "run is"], disable_numparse=True),
                  "", "accuracy in points; the interval is the line's 95% CI of its mean (the run is one seed)."]
    if result["stale"]:
        lines += ["", "stale:"] + [f"  {s['line']}: {'; '.join(s['reasons'])}" for s in result["stale"]]
    else:
        lines += ["", "stale: none (same commit and data digest)"]
    lines += [f"left out: {message}" for message in result["left_out"]]
    return "\n".join(lines)
