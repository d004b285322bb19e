"""`dpbench leaderboard --format sqlite`: every record as rows, and docs/record.md's example query gives the
answer worked out by hand from the records."""
import copy
import json
import math
import re
import sqlite3

import pytest
from click.testing import CliRunner

from dpbench.cli import main
from dpbench.report.sqlite_export import write_sqlite
from tests.conftest import REPO

COMMITTED = REPO / "leaderboard" / "records" / "digits-mnist" / "dp-loda" / "default-5e1054b95f"


def _committed(eps: str) -> dict:
    """A committed record whose ledger recomputes: the templates of the small records below."""
    return json.loads((COMMITTED / eps / "seed0" / "record.json").read_text())


def _record(method: str, eps: str, seed: int, accuracy: float, **changes) -> dict:
    record = copy.deepcopy(_committed(eps))
    record["method"]["name"], record["seed"] = method, seed
    record["metrics"]["accuracy"]["value"] = accuracy
    record.update(changes)
    return record


def _small_records() -> list[dict]:
    tampered = _record("method-b", "eps5", 2, 0.95)
    tampered["privacy"] = {**tampered["privacy"], "epsilon": 1.0}  # claims less ε than its ledger spends
    return [
        _record("method-a", "eps5", 0, 0.60), _record("method-a", "eps5", 1, 0.70),
        _record("method-a", "eps10", 0, 0.90),  # ε above 5
        _record("method-b", "eps5", 0, 0.50),
        _record("method-b", "eps5", 1, 0.99, status="failed"),
        tampered,
        _record("method-c", "epsinf", 0, 0.99),  # no DP: ε = inf
    ]


def documented_query() -> str:
    text = (REPO / "docs" / "record.md").read_text(encoding="utf-8")
    section = text.split("## Querying records with SQLite", 1)[1]
    return re.search(r"```sql\n(.*?)```", section, re.S).group(1)


def test_the_documented_query_gives_the_best_accuracy_per_method_at_eps_at_most_5(tmp_path):
    path = write_sqlite(_small_records(), tmp_path / "leaderboard.sqlite")
    with sqlite3.connect(path) as connection:
        rows = connection.execute(documented_query()).fetchall()
    # method-a: the better of its two ε = 5 seeds; method-b: its only sound completed run (the failed one and the
    # one whose ε does not recompute are out); method-a's ε = 10 run and method-c's ε = inf run are out
    assert [(method, round(best, 6), eps, seed) for _, method, best, eps, _, seed in rows] == [
        ("method-a", 0.7, 5.0, 1), ("method-b", 0.5, 5.0, 0)]


def test_every_record_metric_and_stage_is_a_row(tmp_path):
    records = _small_records()
    path = write_sqlite(records, tmp_path / "leaderboard.sqlite")
    with sqlite3.connect(path) as connection:
        count = lambda table: connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: E731
        assert count("runs") == len(records)
        assert count("metrics") == sum(len(r["metrics"]) for r in records)
        assert count("privacy_stages") == sum(len(r["privacy"]["stages"]) for r in records)
        checks = dict(connection.execute("SELECT method || ':' || seed || ':' || status, epsilon_recomputes "
                                         "FROM runs WHERE method = 'method-b'").fetchall())
        assert checks == {"method-b:0:completed": 1, "method-b:1:failed": None, "method-b:2:completed": 0}
        (eps,) = connection.execute("SELECT epsilon_target FROM runs WHERE method = 'method-c'").fetchone()
        assert math.isinf(eps)
        sigma = connection.execute("SELECT s.noise_multiplier FROM privacy_stages AS s JOIN runs AS r USING (run_id) "
                                   "WHERE r.method = 'method-a' AND r.seed = 0 AND r.epsilon_target = 5").fetchone()[0]
        assert sigma == pytest.approx(records[0]["privacy"]["stages"][0]["noise_multiplier"])
        whole = connection.execute("SELECT json_extract(record, '$.pair.data_digest') FROM runs LIMIT 1").fetchone()
        assert whole[0] == records[0]["pair"]["data_digest"]


@pytest.mark.slow
def test_the_command_writes_the_sqlite_file_into_out(tmp_path):
    runs = tmp_path / "runs"
    for record in _small_records()[:4]:
        folder = runs / "digits-mnist" / record["method"]["name"] / "default-5e1054b95f" / \
            f"eps{record['privacy']['epsilon_target']:g}" / f"seed{record['seed']}"
        folder.mkdir(parents=True)
        (folder / "record.json").write_text(json.dumps(record))
    result = CliRunner().invoke(main, ["leaderboard", "--runs", str(runs), "--out", str(tmp_path / "board"),
                                       "--format", "sqlite"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(tmp_path / "board" / "leaderboard.sqlite") as connection:
        assert connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 4


@pytest.mark.slow  # two whole (mock) runs
def test_smoke_runs_become_rows_the_documented_query_reads(tmp_path, mock_method, shared_cache):
    runner, runs = CliRunner(), tmp_path / "runs"
    for eps in ("1", "10"):
        result = runner.invoke(main, ["run", "--method", mock_method, "--pair", "digits-mnist", "--eps", eps,
                                      "--preset", "smoke", "--evaluator", "accuracy", "--out", str(runs),
                                      "--cache-dir", str(shared_cache), "--json"])
        assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["leaderboard", "--runs", str(runs), "--out", str(tmp_path / "board"),
                                  "--format", "sqlite"])
    assert result.exit_code == 0, result.output
    records = {json.loads(p.read_text())["privacy"]["epsilon_target"]: json.loads(p.read_text())
               for p in runs.rglob("record.json")}
    with sqlite3.connect(tmp_path / "board" / "leaderboard.sqlite") as connection:
        rows = connection.execute(documented_query()).fetchall()
        assert connection.execute("SELECT COUNT(*) FROM runs WHERE preset = 'smoke'").fetchone()[0] == 2
    # only the ε = 1 run is at ε ≤ 5
    assert [(method, best, eps) for _, method, best, eps, _, _ in rows] == [
        (mock_method, pytest.approx(records[1.0]["metrics"]["accuracy"]["value"]), 1.0)]
