"""Records are never overwritten in place (the replaced one moves to history/), readers and the leaderboard's
collect take the newest, and a sweep lists a record made by other code as stale and re-runs it only when asked."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dpbench.cli import main
from dpbench.report.collect import collect_records
from dpbench.run.progress import SilentProgress
from dpbench.run.record_history import history
from dpbench.run.records import RECORD_NAME, read_records, write_record
from dpbench.run.runner import RunRequest
from dpbench.sweep import summary
from dpbench.sweep.driver import SweepRequest, run_sweep
from dpbench.sweep.grid_spec import Cell
from dpbench.sweep.plan import DONE, STALE, CellPlan, stale_reason
from tests.conftest import REPO

COMMITTED = REPO / "leaderboard" / "records" / "digits-mnist/dp-loda/default-5e1054b95f/eps10/seed0" / RECORD_NAME
IDENTITY = Path("digits-mnist/dp-loda/default-5e1054b95f/eps10/seed0")


def _record(accuracy: float, finished_at: str, commit: str = "a" * 40) -> dict:
    record = json.loads(COMMITTED.read_text())
    record["metrics"]["accuracy"]["value"] = accuracy
    record["finished_at"] = finished_at
    record["env"]["git_commit"] = commit
    return record


def _write_plain(folder: Path, record: dict) -> None:
    """A run root's record as an older dpbench left it (the committed record's schema, unvalidated)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD_NAME).write_text(json.dumps(record))


def _accuracies(paths) -> list[float]:
    return [json.loads(Path(p).read_text())["metrics"]["accuracy"]["value"] for p in paths]


def test_a_rewritten_record_keeps_the_old_one_in_history_and_readers_take_the_newest(tmp_path, monkeypatch):
    monkeypatch.setattr("dpbench.run.records.validate_record", lambda record: None)  # the v2 record, as written
    run = tmp_path / "runs" / IDENTITY
    write_record(run, _record(0.61, "2030-01-01T00:00:00+00:00"))
    write_record(run, _record(0.72, "2030-02-01T00:00:00+00:00"))  # a re-run of the same cell
    write_record(run, _record(0.72, "2030-02-01T00:00:00+00:00"))  # the same content again: nothing new to keep
    assert _accuracies([run / RECORD_NAME]) == [0.72]
    kept = history(run)
    assert [p.name for p in kept] == ["record-20300101T000000Z.json"] and _accuracies(kept) == [0.61]
    assert _accuracies(r["_path"] for r in read_records(tmp_path / "runs")) == [0.72]  # history is not read


def test_history_orders_records_of_one_second_by_their_suffix(tmp_path, monkeypatch):
    monkeypatch.setattr("dpbench.run.records.validate_record", lambda record: None)
    for accuracy in (0.1, 0.2, 0.3, 0.4):
        write_record(tmp_path, _record(accuracy, "2030-01-01T00:00:00+00:00"))
    assert [p.name for p in history(tmp_path)] == ["record-20300101T000000Z.json", "record-20300101T000000Z-2.json",
                                                   "record-20300101T000000Z-3.json"]
    assert _accuracies(history(tmp_path)) == [0.1, 0.2, 0.3]


def test_collect_takes_the_newest_of_every_root_and_keeps_the_rest_in_history(tmp_path):
    _write_plain(tmp_path / "node-a" / IDENTITY, _record(0.60, "2030-03-01T00:00:00+00:00"))
    _write_plain(tmp_path / "node-b" / IDENTITY, _record(0.70, "2030-05-01T00:00:00+00:00"))
    _write_plain(tmp_path / "node-c" / IDENTITY, _record(0.65, "2030-04-01T00:00:00+00:00"))
    with pytest.warns(UserWarning, match="newest"):
        assert collect_records([tmp_path / f"node-{n}" for n in "abc"], tmp_path / "records") == 1
    shown = tmp_path / "records" / IDENTITY
    assert _accuracies([shown / RECORD_NAME]) == [0.70]
    assert _accuracies(history(shown)) == [0.60, 0.65]  # oldest first


def test_a_stale_record_is_told_apart_from_a_current_one():
    record = _record(0.7, "2030-01-01T00:00:00+00:00", commit="b" * 40)
    digest = record["pair"]["data_digest"]
    assert stale_reason(record, "b" * 40, digest) is None
    assert "commit bbbbbbbbbb" in stale_reason(record, "c" * 40, digest)
    assert "data" in stale_reason(record, "b" * 40, "another-digest")
    assert stale_reason(record, None, digest) is None  # outside a git checkout the code version is unknown


def _plans(tmp_path, state):
    request = RunRequest(method="dp-sgd", pair="digits-mnist", epsilon=10.0, out=tmp_path)
    return [CellPlan(Cell("dp-sgd", "digits-mnist", 10.0, 0), request, tmp_path / "cell", "h", None, 10, state=state,
                     stale_reason="made by commit aaaaaaaaaa, the code is now at bbbbbbbbbb")]


def test_a_stale_cell_is_listed_and_kept_without_rerun_stale(tmp_path):
    plans = _plans(tmp_path, STALE)
    request = SweepRequest(methods=["dp-sgd"], pairs=["digits-mnist"], epsilons=[10.0], seeds=[0],
                           template=plans[0].request)
    [outcome] = run_sweep(plans, request, SilentProgress())
    assert outcome.status == summary.STALE and "--rerun-stale" in outcome.reason and "commit" in outcome.reason
    assert summary.exit_code([outcome]) == 0  # its completed record stands; the listing says it is stale
    assert summary.counts([outcome])[summary.STALE] == 1
    [done] = run_sweep(_plans(tmp_path, DONE), request, SilentProgress())
    assert done.status == summary.SKIPPED


@pytest.mark.slow
def test_sweep_dry_run_lists_a_record_of_another_commit_as_stale(tmp_path, shared_cache):
    args = ["sweep", "--methods", "dp-sgd", "--pairs", "digits-mnist", "--eps", "10", "--preset", "smoke",
            "--out", str(tmp_path / "runs"), "--cache-dir", str(shared_cache), "--dry-run", "--json"]
    [cell] = json.loads(CliRunner().invoke(main, args, catch_exceptions=False).output)
    assert cell["would"] == "run" and cell["stale"] is None
    record = _record(0.7, "2030-01-01T00:00:00+00:00", commit="0" * 40)
    record.update(config_hash=cell["config_hash"], status="completed")
    _write_plain(Path(cell["run_dir"]), record)
    [cell] = json.loads(CliRunner().invoke(main, args, catch_exceptions=False).output)
    assert cell["would"].startswith("skip (stale") and "commit 0000000000" in cell["stale"]
    [cell] = json.loads(CliRunner().invoke(main, args + ["--rerun-stale"], catch_exceptions=False).output)
    assert cell["would"] == "run again (stale)"
