"""`dpbench leaderboard` leaves the committed leaderboard/ alone: without --out it writes into the user's data
folder, --compare-to reads committed records in place as rows of their own, and a record in the output's records
folder is never overwritten in place (the newest is shown, the others kept in history/)."""
import copy
import csv
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dpbench.cli import main
from dpbench.report.collect import collect_records
from tests.conftest import REPO

COMMITTED = REPO / "leaderboard"
IDENTITY = Path("digits-mnist/dp-loda/default-5e1054b95f/eps10/seed0")


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _user_run(root: Path, accuracy: float, started_at: str = "2030-01-01T00:00:00+00:00") -> dict:
    """A run of the committed record's identity (same pair, method, config, ε and seed) but another start."""
    record = json.loads((COMMITTED / "records" / IDENTITY / "record.json").read_text())
    record = copy.deepcopy(record)
    record["metrics"]["accuracy"]["value"], record["started_at"] = accuracy, started_at
    record["finished_at"] = started_at
    (root / IDENTITY).mkdir(parents=True, exist_ok=True)
    (root / IDENTITY / "record.json").write_text(json.dumps(record))
    return record


@pytest.fixture
def user(tmp_path, monkeypatch):
    """A user working in tmp/work with a runs/ folder, whose data folder is tmp/xdg-data."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


def test_no_flags_writes_into_the_user_data_folder_and_not_the_committed_one(user):
    _user_run(user / "work" / "runs", 0.123)
    before = _snapshot(COMMITTED)
    result = CliRunner().invoke(main, ["leaderboard", "--format", "csv"])
    assert result.exit_code == 0, result.output
    board = user / "xdg-data" / "dpbench" / "leaderboard"
    assert result.output.strip() == f"wrote {board / 'LEADERBOARD.csv'}"
    assert (board / "records" / IDENTITY / "record.json").is_file()
    assert _snapshot(COMMITTED) == before


@pytest.mark.slow
def test_compare_to_adds_the_committed_rows_beside_the_users_read_only(user):
    _user_run(user / "work" / "runs", 0.123)
    before = _snapshot(COMMITTED)
    result = CliRunner().invoke(main, ["leaderboard", "--compare-to", str(COMMITTED / "records"),
                                       "--out", str(user / "board"), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert _snapshot(COMMITTED) == before
    assert not (user / "board" / "records" / "leaderboard").exists()  # compared records are not copied
    rows = {(row["method"], row["epsilon"], row["config_hash"]): row
            for row in csv.DictReader((user / "board" / "LEADERBOARD.csv").open())}
    # the user's run (one seed) and the committed cell of the same identity (all its seeds), each a row of its own
    mine, committed = rows[("dp-loda", "10", "5e1054b95f")], rows[("dp-loda@leaderboard-records", "10", "5e1054b95f")]
    assert (mine["seeds"], float(mine["accuracy_mean"])) == ("1", 0.123)
    committed_seeds = len(list((COMMITTED / "records" / IDENTITY.parent).glob("seed*")))
    assert committed_seeds >= 3
    assert committed["seeds"] == str(committed_seeds) and float(committed["accuracy_mean"]) > 0.5


def test_a_newer_run_is_shown_and_the_older_kept_in_history_never_lost(tmp_path):
    """Records are never overwritten in place (issue 26): the newest of one identity is record.json, whichever
    folder it came from, and every other is kept in history/ beside it; an older copy never displaces a newer."""
    _user_run(tmp_path / "first", 0.5, started_at="2030-01-01T00:00:00+00:00")
    collect_records([tmp_path / "first"], tmp_path / "records")
    kept = tmp_path / "records" / IDENTITY / "record.json"
    _user_run(tmp_path / "second", 0.9, started_at="2031-01-01T00:00:00+00:00")
    assert collect_records([tmp_path / "second"], tmp_path / "records") == 1
    assert json.loads(kept.read_text())["metrics"]["accuracy"]["value"] == 0.9
    history = sorted((kept.parent / "history").iterdir())
    assert [json.loads(p.read_text())["metrics"]["accuracy"]["value"] for p in history] == [0.5]
    collect_records([tmp_path / "first"], tmp_path / "records")  # the older run again: shown no more, kept once
    assert json.loads(kept.read_text())["metrics"]["accuracy"]["value"] == 0.9
    assert sorted((kept.parent / "history").iterdir()) == history
