"""leaderboard.sqlite: every record as rows of three tables (runs, metrics, privacy_stages) that `sqlite3` can
query; the schema is documented in docs/record.md ("Querying records with SQLite")."""
from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from pathlib import Path

from dpbench.report.recheck import privacy_problem
from dpbench.run.records import decode_number

SCHEMA = """
CREATE TABLE runs (
    run_id INTEGER PRIMARY KEY,
    path TEXT, source TEXT, kind TEXT, status TEXT,
    pair TEXT, method TEXT, preset TEXT, config_hash TEXT, overrides TEXT, seed INTEGER,
    epsilon_target REAL, epsilon REAL, delta REAL, accountant TEXT, rng TEXT, large_delta INTEGER,
    epsilon_recomputes INTEGER, privacy_problem TEXT,
    wall_total REAL, wall_finetune REAL, peak_memory_mb REAL, trainable_parameters INTEGER,
    trainable_fraction REAL, device TEXT, git_commit TEXT, started_at TEXT, finished_at TEXT,
    record TEXT
);
CREATE TABLE metrics (
    run_id INTEGER REFERENCES runs(run_id), name TEXT, value REAL, higher_is_better INTEGER,
    reference INTEGER, evaluator TEXT, n_generated INTEGER, n_reference INTEGER, extra TEXT
);
CREATE TABLE privacy_stages (
    run_id INTEGER REFERENCES runs(run_id), stage INTEGER, noise_multiplier REAL, sample_rate REAL,
    expected_batch_size REAL, steps INTEGER, planned_steps INTEGER, max_grad_norm REAL,
    noise_multiplicity INTEGER, budget_share REAL, per_example TEXT, extra TEXT
);
CREATE INDEX metrics_by_name ON metrics(name, run_id);
"""
METRIC_COLUMNS = ("value", "higher_is_better", "reference", "evaluator", "n_generated", "n_reference")
STAGE_COLUMNS = ("noise_multiplier", "sample_rate", "expected_batch_size", "steps", "planned_steps", "max_grad_norm",
                 "noise_multiplicity", "budget_share", "per_example")


def _number(value) -> float | None:
    """A record's number ("inf" is text in JSON) as a float; SQLite stores ±inf as REAL."""
    try:
        return decode_number(value)
    except (TypeError, ValueError):
        return None


def _extra(entry: dict, known: tuple[str, ...]) -> str | None:
    """The entry's fields without a column of their own, as JSON (query them with json_extract)."""
    rest = {k: v for k, v in entry.items() if k not in known}
    return json.dumps(rest, sort_keys=True) if rest else None


def run_row(record: dict) -> tuple:
    privacy, cost = record.get("privacy", {}), record.get("cost", {})
    wall, method = cost.get("wall_seconds", {}), record.get("method", {})
    # failed runs carry no privacy claim to recompute; a completed one is checked as the leaderboard checks it
    problem = privacy_problem(record) if record.get("status") == "completed" else None
    stored = {k: v for k, v in record.items() if not k.startswith("_")}
    return (record.get("_path"), record.get("_source", ""), record.get("kind", "run"), record.get("status"),
            record.get("pair", {}).get("name"), record.get("_method", method.get("name")), record.get("preset"), record.get("config_hash"),
            json.dumps(method.get("overrides", {}), sort_keys=True), record.get("seed"),
            _number(privacy.get("epsilon_target")), _number(privacy.get("epsilon")), _number(privacy.get("delta")),
            privacy.get("accountant"), privacy.get("rng"), int(bool(privacy.get("large_delta"))),
            int(problem is None) if record.get("status") == "completed" else None, problem,
            _number(wall.get("total")), _number(wall.get("finetune")), _number(cost.get("peak_memory_mb")),
            cost.get("trainable_parameters"), _number(cost.get("trainable_fraction")), cost.get("device"),
            record.get("env", {}).get("git_commit"), record.get("started_at"), record.get("finished_at"),
            json.dumps(stored, sort_keys=True))


def _fill(connection: sqlite3.Connection, records: list[dict]) -> None:
    connection.executescript(SCHEMA)
    for record in records:
        row = run_row(record)
        run_id = connection.execute(f"INSERT INTO runs VALUES (NULL{', ?' * len(row)})", row).lastrowid
        for name, metric in record.get("metrics", {}).items():
            values = [_number(metric.get(k)) if k == "value" else metric.get(k) for k in METRIC_COLUMNS]
            connection.execute("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               (run_id, name, *values, _extra(metric, METRIC_COLUMNS)))
        for index, stage in enumerate(record.get("privacy", {}).get("stages", [])):
            values = [stage.get(k) for k in STAGE_COLUMNS]
            connection.execute(f"INSERT INTO privacy_stages VALUES (?, ?{', ?' * len(values)}, ?)",
                               (run_id, index, *values, _extra(stage, STAGE_COLUMNS)))


def write_sqlite(records: list[dict], path: Path) -> Path:
    """Write every record (completed, failed and audits alike; filter on `status` and `kind`) to a fresh SQLite
    file at PATH, atomically: it is built beside PATH and renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        connection = sqlite3.connect(tmp)
        try:
            with connection:
                _fill(connection, records)
        finally:
            connection.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
