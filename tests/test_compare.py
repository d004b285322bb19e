"""`dpbench compare`: one run placed against a folder of hand-made records (no real runs)."""
import json

import pytest
from click.testing import CliRunner
from scipy import stats

from dpbench.cli import main
from dpbench.report.compare import compare_run, comparison_text
from tests.test_records import _record, _write


def _board(root, commit="aaaaaaa1", digest="0123abcd"):
    """m-a at ε = 10 with seeds 0-2, m-b with one seed, and an ε = 1 run that must not be compared."""
    records = [_record("m-a", 10.0, seed, 60.0 + seed, acc) for seed, acc in enumerate((0.80, 0.82, 0.84))]
    records += [_record("m-b", 10.0, 0, 70.0, 0.90), _record("m-c", 1.0, 0, 10.0, 0.99)]
    for record in records:
        record["env"]["git_commit"] = commit
        record["pair"]["data_digest"] = digest
        _write(root, record)


def _run(root, accuracy=0.95, seed=0, commit="aaaaaaa1"):
    record = _record("m-new", 10.0, seed, 55.0, accuracy)
    record["env"]["git_commit"] = commit
    return _write(root, record)


def test_a_run_is_ranked_and_differenced_with_intervals_where_lines_have_seeds(tmp_path):
    _board(tmp_path / "board")
    result = compare_run(_run(tmp_path / "runs"), tmp_path / "board")
    assert result["rank"]["accuracy"] == {"rank": 1, "of": 3} and result["rank"]["fid"] == {"rank": 1, "of": 3}
    differences = {(d["line"], d["metric"]): d for d in result["differences"]}
    assert {line for line, _ in differences} == {"m-a", "m-b"}  # the ε = 1 run is not at this ε
    a = differences[("m-a", "accuracy")]
    half = stats.t.ppf(0.975, 2) * 0.02 / 3 ** 0.5  # the line's t-interval: SD 0.02 over 3 seeds
    assert a["seeds"] == 3 and a["difference"] == pytest.approx(0.95 - 0.82)
    assert (a["ci_low"], a["ci_high"]) == pytest.approx((0.13 - half, 0.13 + half))
    assert a["verdict"] == "better" and a["same_seed_difference"] == pytest.approx(0.15)
    b = differences[("m-b", "accuracy")]
    assert b["ci_low"] is None and b["verdict"].startswith("n/a") and b["difference"] == pytest.approx(0.05)
    assert differences[("m-a", "fid")]["verdict"] == "better"  # FID 55 against 60-62: lower is better
    assert result["stale"] == []
    text = comparison_text(result)
    assert "rank 1 of 3" in text and "stale: none" in text and "+13.0" in text


def test_a_run_inside_a_lines_interval_is_within_and_a_worse_one_ranks_last(tmp_path):
    _board(tmp_path / "board")
    within = compare_run(_run(tmp_path / "runs", accuracy=0.83), tmp_path / "board")
    assert next(d for d in within["differences"] if d["line"] == "m-a" and d["metric"] == "accuracy")[
        "verdict"] == "within"
    worse = compare_run(_run(tmp_path / "runs2", accuracy=0.10), tmp_path / "board")
    assert worse["rank"]["accuracy"] == {"rank": 3, "of": 3}


def test_stale_lines_are_listed_with_their_commit_and_data_digest(tmp_path):
    _board(tmp_path / "board", commit="oldcode1", digest="otherdata")
    result = compare_run(_run(tmp_path / "runs", commit="newcode1"), tmp_path / "board")
    stale = {s["line"]: s["reasons"] for s in result["stale"]}
    assert set(stale) == {"m-a", "m-b"}
    assert stale["m-a"] == ["other code: commit(s) oldcode, the run newcode",
                            "other data digest: otherdata, the run 0123abcd"]
    assert "m-a: other code" in comparison_text(result)


def test_the_command_prints_json_and_refuses_a_folder_without_a_record(tmp_path):
    _board(tmp_path / "board")
    run = _run(tmp_path / "runs")
    result = CliRunner().invoke(main, ["compare", str(run), "--against", str(tmp_path / "board"), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["run"]["method"] == "m-new" and document["run"]["epsilon"] == "10"
    assert document["rank"]["accuracy"]["rank"] == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = CliRunner().invoke(main, ["compare", str(empty), "--against", str(tmp_path / "board")])
    assert refused.exit_code == 2 and "holds no record.json" in refused.output


def test_the_run_itself_is_not_compared_with_its_own_copy(tmp_path):
    _board(tmp_path / "board")
    run = _run(tmp_path / "board")  # the run is already in the folder it is compared against
    result = compare_run(run, tmp_path / "board")
    assert {d["line"] for d in result["differences"]} == {"m-a", "m-b"} and result["rank"]["accuracy"]["of"] == 3
