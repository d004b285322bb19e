"""Per-step DP training times measured on a quiet machine by benchmarks/dp_step.py: a cost that the load of the
machine a leaderboard run shared cannot distort. Read from the newest `dp_step-all-scopes-*.json` in the
repository's benchmarks/ folder, when there is one (a source checkout)."""
from __future__ import annotations

import json
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
PATTERN = "dp_step-all-scopes-*.json"  # written by `python benchmarks/dp_step.py --k 1 --json`


def step_times(folder: Path = BENCHMARKS) -> tuple[dict[str, tuple[float, int]], str | None]:
    """({scope or method: (seconds per DP step, batch)}, the file's name) for K = 1, keyed by both the
    "<backbone>/<scope>" the benchmark ran and its method's name; ({}, None) without a benchmark file."""
    files = sorted(Path(folder).glob(PATTERN)) if Path(folder).is_dir() else []
    if not files:
        return {}, None
    times = {}
    for row in json.loads(files[-1].read_text()):
        if row.get("mode") == "dp" and row.get("k") == 1 and row.get("seconds_per_step"):
            entry = (float(row["seconds_per_step"]), int(row["batch"]))
            times.setdefault(row.get("scope"), entry)
            times.setdefault(row.get("method"), entry)
    return times, files[-1].name


def scope_of(settings: dict) -> str | None:
    """"<backbone>/<scope>" as the benchmark names it, from a method's resolved settings."""
    if settings.get("backbone") and settings.get("scope"):
        return f"{settings['backbone']}/{settings['scope']}"
    return None
