"""The committed leaderboard is generated from the committed records, and only from real-pair runs."""
import copy
from pathlib import Path

from dpbench.api.registry import load_registry
from dpbench.report.leaderboard import RECORDS_DIR, build_leaderboard, page_links, render
from dpbench.report.plots import plot_links
from dpbench.run.records import read_records
from tests.test_records import _record, _write

LEADERBOARD = Path(__file__).resolve().parents[1] / "leaderboard"


def test_committed_leaderboard_regenerates_from_the_committed_records():
    records = read_records(LEADERBOARD / RECORDS_DIR)
    links = page_links(records)
    plots = plot_links({record["pair"]["name"] for record in records})
    expected = render(records, links, list(load_registry().published.values()), plots)
    assert (LEADERBOARD / "LEADERBOARD.md").read_text() == expected, \
        "LEADERBOARD.md is stale: run `dpbench leaderboard --runs leaderboard/records`"
    linked = {relative for pair in links.values() for relative in pair if relative}
    for relative in linked:
        assert (LEADERBOARD / relative).is_file(), relative
    committed = {p.relative_to(LEADERBOARD).as_posix() for folder in ("samples", "curves")
                 for p in (LEADERBOARD / folder).rglob("*.png")}
    assert committed == linked, "sample grids or curves of no committed record are left in leaderboard/"
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


def test_the_real_data_ceiling_is_a_reference_row_of_its_own(tmp_path):
    runs = tmp_path / "runs"
    for seed, ceiling in ((0, 0.95), (1, 0.93)):
        record = _record("dp-loda", 10.0, seed, 50.0, 0.8)
        record["metrics"]["accuracy_real_data"] = {"value": ceiling, "higher_is_better": True, "reference": True,
                                                   "evaluator": "accuracy"}
        _write(runs, record)
    text = build_leaderboard(runs, tmp_path / "board").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| classifier on real private data (ceiling)"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "94.0 ± 12.7 (n=2)"  # t-interval, 1 dof, once per pair in the references table
    assert text.count("classifier on real private data (ceiling)") == 1


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


# --- the ranked layout ----------------------------------------------------------------------------------------------

def _table_rows(text: str, heading: str) -> list[list[str]]:
    """The rows (header first) of the first Markdown table after the line HEADING."""
    after = text.split(heading + "\n", 1)[1].lstrip("\n")
    lines = []
    for line in after.splitlines():
        if not line.startswith("|"):
            if lines:
                break
            continue
        lines.append(line)
    return [[c.strip() for c in line.strip("|").split("|")] for i, line in enumerate(lines) if i != 1]


def _seeded(method, epsilon, accuracies, fid=50.0, commit="aaaaaaa1", **env):
    records = []
    for seed, accuracy in enumerate(accuracies):
        record = _record(method, epsilon, seed, fid + seed, accuracy)
        record["env"]["git_commit"] = commit
        record["env"].update(env)
        records.append(record)
    return records


def test_the_summary_ranks_marks_the_best_and_its_ties_and_stays_within_8_columns(tmp_path):
    runs = tmp_path / "runs"
    records = (_seeded("m-best", 10.0, [0.90, 0.91, 0.92]) + _seeded("m-tied", 10.0, [0.99, 0.60, 0.95])
               + _seeded("m-low", 10.0, [0.50, 0.52, 0.51]) + _seeded("m-best", 1.0, [0.60, 0.61, 0.62])
               + _seeded("m-low", 1.0, [0.40, 0.41, 0.42], commit="bbbbbbb2") + _seeded("m-one", 1.0, [0.99]))
    for record in records:
        _write(runs, record)
    text = build_leaderboard(runs, tmp_path / "board").read_text()
    table = _table_rows(text, "**accuracy (%) ↑**, mean ± 95% CI half-width (n = seeds)")
    header, rows = table[0], {row[0]: row for row in table[1:]}
    assert len(header) <= 8 and header[:3] == ["method", "ε = 1", "ε = 10"]
    assert rows["m-best"][2].startswith("**91.0**") and rows["m-best"][2].endswith("(n=3)")
    assert rows["m-tied"][2].endswith("tied") and "**" not in rows["m-low"][2]
    # "of 3": ranked among at most three lines; m-low is 2nd of 2 at ε = 1 and 3rd of 3 at ε = 10
    assert rows["m-best"][3] == "1.0 of 3" and rows["m-low"][3] == "2.5 of 3"
    assert rows["m-tied"][3] == "1.0 of 3 (at 1 of 2 ε)"
    assert rows["m-best"][4] == "76.0 (ε 1–10)"  # (61 + 91) / 2: the trapezoid over ε 1..10, per unit of ε
    assert rows["m-low"][-1] == "aaaaaaa, bbbbbbb" and "This table mixes 2 code versions" in text
    assert [r[0] for r in table[1:]] == ["m-best", "m-tied", "m-low", "m-one"]  # by mean rank, unranked last
    # at ε = 1 a single seed has the best mean: it is not ranked, and no cell is bold there
    assert rows["m-one"][1] == "99.0 (n=1)" and rows["m-one"][3] == "–" and rows["m-best"][1] == "61.0 ± 2.5 (n=3)"
    pairwise = _table_rows(text, "### digits-mnist: pairwise, seed-paired 95% intervals")
    verdicts = {(row[0], row[1]): row[3] for row in pairwise[1:]}
    assert verdicts[("10", "m-best − m-low")] == "m-best better" and verdicts[("10", "m-best − m-tied")] == "tied"
    # the order of the page: summary, pairwise, references, details, costs
    order = [text.index(h) for h in ("### digits-mnist: summary", "### digits-mnist: pairwise",
                                      "### digits-mnist, ε = 1: details", "### digits-mnist: costs")]
    assert order == sorted(order)


def test_cost_cells_use_the_runs_that_ran_alone_and_mark_the_others(tmp_path):
    runs = tmp_path / "runs"
    alone = {"threads": 2, "jobs": 1}
    records = (_seeded("m-alone", 10.0, [0.8, 0.8]) + _seeded("m-shared", 10.0, [0.7, 0.7])
               + _seeded("m-unknown", 10.0, [0.6]))
    for record, (jobs, load_end, finetune) in zip(records, [(1, 2.2, 100.0), (1, 4.5, 900.0), (2, 2.0, 300.0),
                                                            (2, 2.0, 300.0), (None, None, 50.0)]):
        record["cost"]["wall_seconds"]["finetune"] = finetune
        if jobs is not None:
            record["env"]["concurrency"] = {"sweep_jobs": jobs, "torch_threads": alone["threads"],
                                            "load_start": [0.1, 0.1, 0.1], "load_end": [load_end, 1.0, 0.5]}
    for record in records:
        _write(runs, record)
    text = build_leaderboard(runs, tmp_path / "board").read_text()
    costs = {row[0]: row for row in _table_rows(text, "### digits-mnist: costs")[1:]}
    assert costs["m-alone"][4] == "100 (n=1)" and costs["m-alone"][8] == "alone 1/2, shared 1/2"  # the 900 s is out
    assert costs["m-shared"][4] == "300 ± 0 (n=2) *(shared)*" and costs["m-unknown"][4].endswith("*(load unknown)*")
    assert costs["m-alone"][2] == "4,000"  # steps × batch: 10 × 400, the same whatever the load


def test_rows_name_their_commit_copies_and_a_withheld_grid(tmp_path):
    runs = tmp_path / "runs"
    kept, withheld = _record("m-a", 10.0, 0, 50.0, 0.8), _record("m-b", 10.0, 0, 60.0, 0.7)
    kept["env"]["git_commit"], withheld["env"]["git_commit"] = "1234567abc", "7654321abc"
    for record, fraction in ((kept, 0.0), (withheld, 0.2)):
        record["metrics"]["copies_train_fraction"] = {"value": fraction, "higher_is_better": False,
                                                      "reference": False, "evaluator": "copies"}
    withheld["metrics"]["copies_test_fraction"] = {"value": 0.01, "higher_is_better": False, "reference": True,
                                                   "evaluator": "copies"}
    withheld["withheld"] = {"grid": "20% of the samples copy a training image"}
    for record in (kept, withheld):
        (_write(runs, record) / "samples.png").write_bytes(b"grid")
    text = build_leaderboard(runs, tmp_path / "board").read_text()
    details = {row[0]: row for row in _table_rows(text, "### digits-mnist, ε = 10: details")[1:]}
    header = _table_rows(text, "### digits-mnist, ε = 10: details")[0]
    samples, commit, copies = header.index("samples"), header.index("commit(s)"), header.index("copies")
    assert details["m-a"][commit] == "1234567" and details["m-b"][commit] == "7654321"
    assert details["m-a"][copies] == "0.0%" and details["m-b"][copies] == "20.0% (test 1.0%)"
    assert not any(h.startswith("copies_") for h in header)  # the copy check's metrics make the one column
    assert details["m-b"][samples] == "withheld: 20% of the samples copy a training image"
    assert details["m-a"][samples].startswith("[png](")
    grids = [p.name for p in (tmp_path / "board" / "samples").rglob("*.png")]
    assert len(grids) == 1 and grids[0].startswith("m-a")  # the withheld grid is never copied beside the page


def test_a_classifier_baseline_gets_its_caption(tmp_path):
    runs = tmp_path / "runs"
    baseline = _record("m-classifier", 10.0, 0, 0.0, 0.9)
    baseline["method"]["produces"], baseline["method"]["reference"] = "classifier", "Abadi et al. 2016"
    del baseline["metrics"]["fid"]
    _write(runs, baseline)
    _write(runs, _record("m-generator", 10.0, 0, 50.0, 0.7))
    text = build_leaderboard(runs, tmp_path / "board").read_text()
    assert "*m-classifier* is a baseline, not a generator: a DP classifier trained directly on the 4,000" in text
    assert "m-generator* is a baseline" not in text


def test_the_csv_carries_ranks_and_the_pairwise_verdicts(tmp_path):
    import csv

    runs = tmp_path / "runs"
    for record in _seeded("m-best", 10.0, [0.90, 0.91, 0.92]) + _seeded("m-low", 10.0, [0.50, 0.52, 0.51]):
        _write(runs, record)
    path = build_leaderboard(runs, tmp_path / "board", fmt="csv")
    rows = {row["method"]: row for row in csv.DictReader(path.open())}
    assert rows["m-best"]["accuracy_rank"] == "1" and rows["m-low"]["accuracy_rank"] == "2"
    assert rows["m-best"]["commits"] == "aaaaaaa" and rows["m-best"]["load"] == "unknown:3"
    assert rows["m-best"]["accuracy_mean_rank"] == "1" and rows["m-low"]["accuracy_mean_rank"] == "2"
    assert rows["m-best"]["accuracy_area_over_epsilon"] == "" and rows["m-best"]["area_epsilons"] == ""  # one ε
    (pairwise,) = [row for row in csv.DictReader((tmp_path / "board" / "LEADERBOARD-pairwise.csv").open())
                   if row["metric"] == "accuracy"]
    assert (pairwise["first"], pairwise["second"], pairwise["verdict"], pairwise["shared_seeds"]) == (
        "m-best", "m-low", "better", "3")
    assert float(pairwise["ci_low"]) > 0 and pairwise["ci_method"] == "t"


def test_the_cost_table_carries_the_benchmarked_step_time_of_the_scope(tmp_path):
    import json

    from dpbench.report.frame import records_frame
    from dpbench.report.pairwise import pair_runs
    from dpbench.report.step_times import step_times
    from dpbench.report.summary import costs_table

    rows = [{"method": "m-a", "scope": "pixel/loda", "k": 1, "mode": "dp", "batch": 64, "seconds_per_step": 0.25},
            {"method": "m-a", "scope": "pixel/loda", "k": 1, "mode": "non_private", "batch": 64,
             "seconds_per_step": 0.2},
            {"method": "m-a", "scope": "pixel/loda", "k": 4, "mode": "dp", "batch": 64, "seconds_per_step": 0.9}]
    (tmp_path / "dp_step-all-scopes-2026-01-01.json").write_text(json.dumps(rows))
    times, source = step_times(tmp_path)
    assert times == {"pixel/loda": (0.25, 64), "m-a": (0.25, 64)} and source == "dp_step-all-scopes-2026-01-01.json"
    assert step_times(tmp_path / "none") == ({}, None)
    record = _record("m-b", 10.0, 0, 50.0, 0.8)  # another method on the benchmarked scope
    record["method"]["settings"].update(backbone="pixel", scope="loda")
    frame, _ = records_frame([record, _record("m-c", 10.0, 0, 50.0, 0.8)])
    table = "\n".join(costs_table(pair_runs(frame, "digits-mnist"), times, source))
    cells = {row[0]: row for row in _table_rows("x\n" + table, "x")[1:]}
    assert cells["m-b"][3] == "0.250 @ 64" and cells["m-c"][3] == "–"
    assert "from benchmarks/dp_step-all-scopes-2026-01-01.json" in table


def test_a_run_with_training_curves_links_them_beside_its_grid(tmp_path):
    runs = tmp_path / "runs"
    with_curves, without = _record("m-a", 10.0, 0, 50.0, 0.8), _record("m-b", 10.0, 0, 60.0, 0.7)
    for record in (with_curves, without):
        (_write(runs, record) / "samples.png").write_bytes(b"grid")
    next((runs).rglob("m-a/**/record.json")).with_name("curves.png").write_bytes(b"curves of m-a")
    text = build_leaderboard(runs, tmp_path / "board").read_text()
    header, *rows = _table_rows(text, "### digits-mnist, ε = 10: details")
    details = {row[0]: row[header.index("samples")] for row in rows}
    link = details["m-a"].split("[curves](")[1].rstrip(")")
    assert (tmp_path / "board" / link).read_bytes() == b"curves of m-a"  # collected with the record, copied here
    assert "[curves]" not in details["m-b"]
