"""The committed leaderboard is generated from the committed records, and only from real-pair runs."""
import copy
from pathlib import Path

from dpbench.api.registry import load_registry
from dpbench.report.leaderboard import RECORDS_DIR, build_leaderboard, render, sample_grid_sources
from dpbench.report.plots import plot_links
from dpbench.run.records import read_records
from tests.test_records import _record, _write

LEADERBOARD = Path(__file__).resolve().parents[1] / "leaderboard"


def test_committed_leaderboard_regenerates_from_the_committed_records():
    records = read_records(LEADERBOARD / RECORDS_DIR)
    links = {key: relative for key, (_, relative) in sample_grid_sources(records).items()}
    plots = plot_links({record["pair"]["name"] for record in records})
    expected = render(records, links, list(load_registry().published.values()), plots)
    assert (LEADERBOARD / "LEADERBOARD.md").read_text() == expected, \
        "LEADERBOARD.md is stale: run `dpbench leaderboard --runs leaderboard/records`"
    for relative in links.values():
        assert (LEADERBOARD / relative).is_file(), relative
    committed = {p.relative_to(LEADERBOARD).as_posix() for p in (LEADERBOARD / "samples").rglob("*.png")}
    assert committed == set(links.values()), "sample grids of no committed record are left in leaderboard/samples"
    # the plots are committed beside the page (their bytes depend on the matplotlib build, so only their presence
    # is checked here; tests/test_leaderboard_plots.py checks that drawing is deterministic)
    assert plots and all(f"![{caption}]({link})" in expected for links_ in plots.values() for caption, link in links_)
    for pair_links in plots.values():
        for _, relative in pair_links:
            assert (LEADERBOARD / relative).is_file() and (LEADERBOARD / relative).read_bytes()[:4] == b"\x89PNG"


def test_collected_records_leave_out_synthetic_sets_and_tuning_trials(tmp_path):
    runs = tmp_path / "runs"
    kept = _write(runs, _record("dp-loda", 10.0, 0, 50.0, 0.8))
    (kept / "samples.png").write_bytes(b"grid")
    (kept / "synthetic.npz").write_bytes(b"images")
    trial = copy.deepcopy(_record("dp-loda", 10.0, 1, 5.0, 0.99))
    trial["pair"]["info"] = {"proxy": {"sizes": [900, 539, 358]}}
    _write(runs, trial)
    _write(runs, _record("public-only", 0.0, 0, 120.0, 0.4))
    text = build_leaderboard(runs, tmp_path / "board").read_text()
    collected = sorted(p.relative_to(tmp_path / "board" / RECORDS_DIR).as_posix()
                       for p in (tmp_path / "board" / RECORDS_DIR).rglob("*") if p.is_file())
    assert len(collected) == 3 and not any(p.endswith("synthetic.npz") for p in collected)
    assert sum(p.endswith("record.json") for p in collected) == 2 and any(p.endswith("samples.png") for p in collected)
    assert "99.00%" not in text and "80.00%" in text  # the proxy trial never reaches the table
    # re-rendering from the records folder alone gives the same page
    again = build_leaderboard(tmp_path / "board" / RECORDS_DIR, tmp_path / "board").read_text()
    assert again == text
    grids = list((tmp_path / "board" / "samples").rglob("*.png"))
    assert len(grids) == 1
    # a record removed from the folder takes its grid with it on the next render
    for path in (tmp_path / "board" / RECORDS_DIR).rglob("samples.png"):
        path.unlink()
    build_leaderboard(tmp_path / "board" / RECORDS_DIR, tmp_path / "board")
    assert not grids[0].exists()


def test_the_real_data_ceiling_is_a_row_of_its_own(tmp_path):
    runs = tmp_path / "runs"
    for seed, ceiling in ((0, 0.95), (1, 0.93)):
        record = _record("dp-loda", 10.0, seed, 50.0, 0.8)
        record["metrics"]["accuracy_real_data"] = {"value": ceiling, "higher_is_better": True, "reference": True,
                                                   "evaluator": "accuracy"}
        _write(runs, record)
    text = build_leaderboard(runs, tmp_path / "board").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| *real data (ceiling)*"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "2" and "94.00% ± 12.71% (n = 2)" in cells  # t-interval, 1 dof


def test_a_record_whose_epsilon_does_not_recompute_is_left_out(tmp_path):
    import pytest

    runs = tmp_path / "runs"
    _write(runs, _record("dp-loda", 10.0, 0, 50.0, 0.8))
    understated = _record("dp-lora", 10.0, 0, 40.0, 0.9)
    understated["privacy"]["stages"][0]["noise_multiplier"] = 0.05  # this ledger spends far more than ε = 10
    _write(runs, understated)
    misquoted = _record("dp-ldm", 10.0, 0, 30.0, 0.95)
    misquoted["privacy"]["epsilon"] = 0.001  # the claim is not what the ledger gives
    _write(runs, misquoted)
    with pytest.warns(UserWarning, match=r"left out 2 record\(s\)(?=.*exceeds the target)(?=.*recomputes to)"):
        text = build_leaderboard(runs, tmp_path / "board").read_text()
    tables, left_out = text.split("## Left out")
    assert "dp-loda" in tables and "dp-lora" not in tables and "dp-ldm" not in tables.split("## Published")[0]
    assert "dp-lora" in left_out and "exceeds the target" in left_out and "recomputes to" in left_out
