"""The leaderboard's merged run roots, confidence intervals, plots and its md, html and csv formats."""
import base64
import copy
import csv
import io
import math
import re
import shutil
import warnings

import pytest

from dpbench.api.types import PublishedResult
from dpbench.report.frame import records_frame
from dpbench.report.leaderboard import RECORDS_DIR, build_leaderboard
from dpbench.report.plots import cost_points, plot_links, utility_series
from dpbench.report.stats import format_interval, mean_interval
from tests.test_records import _record, _write

PUBLISHED = [
    PublishedResult(name="paper-digits", method="dp-loda (paper)", private_dataset="MNIST", epsilon=10.0, delta=1e-5,
                    metrics={"accuracy": 0.97, "fid": 9.5}, source="a paper", setting="theirs",
                    pairs=("digits-mnist",)),
    PublishedResult(name="paper-other", method="dp-lora (paper)", private_dataset="CIFAR-10", epsilon=5.0, delta=1e-5,
                    metrics={"accuracy": 0.5}, source="another paper", setting="theirs", pairs=("other-pair",)),
]


def _rows(text: str, label: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith(f"| {label} ")]


def _details(text: str) -> str:
    """The per-ε details tables of the page (the summary, pairwise and cost tables start with the method too)."""
    return "\n".join(part for part in text.split("### ") if ": details" in part.split("\n")[0])


def _same(a, b) -> bool:
    return (a.n, a.method) == (b.n, b.method) and (a.mean, a.low, a.high) == pytest.approx((b.mean, b.low, b.high))


def _grid(records: list[dict], runs):
    """Write RECORDS under RUNS with a 2x2 PNG sample grid each."""
    from PIL import Image

    for record in records:
        directory = _write(runs, record)
        buffer = io.BytesIO()
        Image.new("RGB", (2, 2), (record["seed"] * 40, 100, 200)).save(buffer, format="PNG")
        (directory / "samples.png").write_bytes(buffer.getvalue())


def _board_records():
    records = [_record("dp-loda", 10.0, seed, 50.0 + 10 * seed, 0.70 + 0.05 * seed) for seed in range(3)]
    records += [_record("dp-loda", 1.0, 0, 90.0, 0.5), _record("dp-lora", 10.0, 0, 60.0, 0.6),
                _record("dp-loda", math.inf, 0, 20.0, 0.95), _record("public-only", 0.0, 0, 120.0, 0.4)]
    for record in records:
        record["cost"]["wall_seconds"]["finetune"] = 360.0 * (1 + record["seed"])
    records[-1]["cost"]["wall_seconds"]["finetune"] = None  # public-only fine-tunes nothing
    return records


# --- confidence intervals -------------------------------------------------------------------------------------------

def test_t_interval_against_a_hand_computed_value():
    interval = mean_interval([1.0, 2.0, 3.0])
    # mean 2, sample std 1, t(0.975, 2 dof) = 4.302652729911275: half-width 4.3027 / sqrt(3) = 2.48414
    assert interval.method == "t" and interval.n == 3 and interval.mean == 2.0
    assert interval.half_width == pytest.approx(2.484138, abs=1e-6)
    assert format_interval(interval, ".3g") == "2 ± 2.48 (n = 3)"
    two = mean_interval([50.0, 70.0])  # 1 dof: t = 12.7062, std 14.142 / sqrt(2) = 10
    assert two.half_width == pytest.approx(127.062047, abs=1e-5)


def test_one_seed_has_no_interval_and_missing_values_are_skipped():
    assert format_interval(mean_interval([0.595]), ".2%") == "59.50% (n = 1)"
    assert mean_interval([0.5, None, float("nan")]).n == 1
    assert mean_interval([]) is None and format_interval(None, ".2f") == "–"


def test_bootstrap_from_five_seeds_is_a_percentile_interval_of_the_mean():
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    interval = mean_interval(values)
    assert interval.method == "bootstrap" and interval.n == 6 and interval.mean == 3.5
    assert mean_interval(values) == interval  # a fixed resampling stream: the committed page regenerates
    t_half = 2.5705818 * 1.8708287 / math.sqrt(6)  # the t-interval's half-width, 1.963
    # the percentile bootstrap is narrower than the t-interval at small n (it ignores the t tails) and, for the
    # mean of 1..6, close to the normal interval 3.5 ± 1.96 * 1.7078 / sqrt(6) = [2.13, 4.87]
    assert 3.5 - t_half < interval.low < 2.4 and 4.6 < interval.high < 3.5 + t_half
    assert re.fullmatch(r"3\.5 \[2\.\d+, 4\.\d+\] \(n = 6\)", format_interval(interval, ".3g"))
    assert mean_interval([1.0, 2.0, 3.0, 4.0]).method == "t"
    assert mean_interval([1.0, 2.0, 3.0, 4.0, 5.0]).method == "bootstrap"  # from n = 5 on


# --- merging run roots ----------------------------------------------------------------------------------------------

def test_two_run_roots_merge_each_run_once_and_the_recheck_covers_both(tmp_path):
    first, second = tmp_path / "node1", tmp_path / "node2"
    seeds = [_record("dp-loda", 10.0, seed, 50.0 + seed, 0.8) for seed in range(3)]
    _grid(seeds[:2], first)
    _grid(seeds[1:], second)  # seed 1 on both nodes: one run, counted once
    tampered = copy.deepcopy(seeds[0])
    tampered["metrics"]["accuracy"]["value"] = 0.99
    tampered["privacy"]["epsilon"] = 0.5  # claims less than its ledger spends
    _grid([tampered], second)  # a second, edited copy of node1's seed 0 never displaces the sound one
    edited = _record("dp-lora", 10.0, 0, 40.0, 0.9)
    edited["privacy"]["epsilon"] = 0.001
    _grid([edited], second)  # only on node2, and its ε does not recompute: left out
    with pytest.warns(UserWarning) as caught:
        text = build_leaderboard([first, second], tmp_path / "board").read_text()
    messages = " ".join(str(w.message) for w in caught)
    assert "differing records under several roots" in messages and "left out 1 record(s)" in messages
    tables, left_out = text.split("## Left out")
    (loda,) = _rows(_details(tables), "dp-loda")
    assert loda[3] == "3" and "(n = 3)" in loda[5]  # seeds 0, 1, 2: the shared seed 1 is not counted twice
    assert "99.00%" not in tables and "80.00% ± 0.00% (n = 3)" in loda
    assert "dp-lora" not in tables and "dp-lora" in left_out and "recomputes to" in left_out
    collected = sorted(p.parent.name for p in (tmp_path / "board" / RECORDS_DIR).rglob("record.json"))
    assert collected == ["seed0", "seed0", "seed1", "seed2"]  # dp-loda 0, 1, 2 and the left-out dp-lora


def test_the_same_run_under_two_paths_in_the_records_is_one_row(tmp_path):
    runs = tmp_path / "runs"
    record = _record("dp-loda", 10.0, 0, 50.0, 0.8)
    directory = _write(runs, record)
    shutil.copytree(directory, tmp_path / "runs" / "copied-by-hand" / "seed0")
    text = build_leaderboard(runs, tmp_path / "board").read_text()
    (row,) = _rows(_details(text), "dp-loda")
    assert row[3] == "1"


# --- cells ----------------------------------------------------------------------------------------------------------

def test_fid_shows_its_sample_count_and_kid_its_subset_std(tmp_path):
    runs = tmp_path / "runs"
    new, old = _record("dp-loda", 10.0, 0, 50.0, 0.8), _record("dp-lora", 10.0, 0, 60.0, 0.7)
    counts = {"n_generated": 1000, "n_reference": 1000}
    new["metrics"]["fid"].update(counts)
    new["metrics"]["kid"] = {"value": 0.04, "higher_is_better": False, "reference": False, "evaluator": "fid",
                             **counts, "kid_std": 0.0021, "kid_subset_size": 500, "kid_subsets": 100}
    old["metrics"]["fid"].update(counts)  # written before the subset size was recorded: subsets of 1000 of 1000
    old["metrics"]["kid"] = {"value": 0.05, "higher_is_better": False, "reference": False, "evaluator": "fid",
                             **counts, "kid_std": 6e-8}
    _write(runs, new)
    _write(runs, old)
    text = build_leaderboard(runs, tmp_path / "board").read_text()
    (loda,), (lora,) = _rows(_details(text), "dp-loda"), _rows(_details(text), "dp-lora")
    assert loda[5] == "50 (n = 1) @ 1,000 samples" and loda[6] == "0.04 (n = 1); std 0.0021"
    assert lora[6] == "0.05 (n = 1); std n/a (subset = n)"


# --- plots ----------------------------------------------------------------------------------------------------------

def test_plot_series_hold_lines_references_and_published_points():
    frame, _ = records_frame(_board_records())
    accuracy = utility_series(frame, "digits-mnist", "accuracy", PUBLISHED)
    lines = {line.label: line for line in accuracy.lines}
    assert set(lines) == {"dp-loda", "dp-lora"}  # ε = ∞ and ε = 0 are no points on the ε axis
    assert lines["dp-loda"].epsilons == [1.0, 10.0]
    assert _same(lines["dp-loda"].intervals[1], mean_interval([0.70, 0.75, 0.80]))  # error bars: the cells' 95% CI
    references = {(r.kind, r.label): r.value for r in accuracy.references}
    # named as the page's references table names them
    assert references == {("no DP", "dp-loda without DP (ε = ∞)"): 0.95,
                          ("public data only", "public-only generator: public-only"): 0.4}
    # only the published number of this pair, at its ε, marked as published
    assert [(p.label, p.epsilon, p.value) for p in accuracy.published] == [
        ("published: dp-loda (paper), MNIST", 10.0, 0.97)]
    fid = utility_series(frame, "digits-mnist", "fid", PUBLISHED)
    assert [p.value for p in fid.published] == [9.5] and lines["dp-loda"].label in [l.label for l in fid.lines]
    assert utility_series(frame, "other-pair", "accuracy", PUBLISHED).lines == []


def test_cost_points_are_fine_tune_hours_against_accuracy():
    records = _board_records()
    records[4]["cost"]["device"] = "cuda"  # the dp-lora run was fine-tuned on a GPU
    frame, _ = records_frame(records)
    points = {(p.label, p.epsilon): p for p in cost_points(frame, "digits-mnist")}
    assert set(points) == {("dp-loda", 1.0), ("dp-loda", 10.0), ("dp-lora", 10.0), ("dp-loda", math.inf)}
    assert _same(points[("dp-loda", 10.0)].hours, mean_interval([0.1, 0.2, 0.3]))  # 360 s × (1 + seed)
    assert points[("dp-lora", 10.0)].device == "GPU" and points[("dp-loda", 1.0)].device == "CPU"


def test_plots_are_written_embedded_in_the_page_and_deterministic(tmp_path):
    runs = tmp_path / "runs"
    _grid(_board_records(), runs)
    text = build_leaderboard(runs, tmp_path / "board", PUBLISHED).read_text()
    (utility, cost), = plot_links(["digits-mnist"]).values()
    assert utility[1] == "plots/digits-mnist-privacy-utility.png" and cost[1] == "plots/digits-mnist-cost.png"
    plots_section = text.split("## digits-mnist\n")[1].split("### digits-mnist: summary")[0]
    assert f"![{utility[0]}]({utility[1]})" in plots_section and f"![{cost[0]}]({cost[1]})" in plots_section
    first = {name: (tmp_path / "board" / name).read_bytes() for name in (utility[1], cost[1])}
    assert all(data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000 for data in first.values())
    assert build_leaderboard(tmp_path / "board" / RECORDS_DIR, tmp_path / "board", PUBLISHED).read_text() == text
    assert {name: (tmp_path / "board" / name).read_bytes() for name in first} == first  # the same bytes again


# --- formats --------------------------------------------------------------------------------------------------------

def test_html_is_one_self_contained_page(tmp_path):
    runs = tmp_path / "runs"
    _grid(_board_records(), runs)
    page = build_leaderboard(runs, tmp_path / "board", PUBLISHED, "html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page and "<th>method</th>" in page
    assert not re.search(r"(src|href)=\"(?!data:)", page) and "<script" not in page and "<link" not in page
    sources = re.findall(r'<img class="(\w+)" alt="[^"]*" src="([^"]+)"', page)
    assert len(re.findall(r"<img ", page)) == len(sources)
    assert {css for css, _ in sources} == {"plot", "grid"} and len([s for s in sources if s[0] == "plot"]) == 2
    for _, source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:4] == b"\x89PNG"
    assert "public-only generator: public-only (ε = 0)" in page and "<strong>" in page and "<code>" in page
    assert "<h3>digits-mnist: summary</h3>" in page
    assert not (tmp_path / "board" / "LEADERBOARD.md").exists()  # only the format asked for


def test_csv_has_a_row_per_cell_with_mean_interval_and_seeds(tmp_path):
    runs = tmp_path / "runs"
    _grid(_board_records(), runs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left out here
        path = build_leaderboard(runs, tmp_path / "board", fmt="csv")
    rows = list(csv.DictReader(path.open()))
    assert [(r["method"], r["epsilon"]) for r in rows] == [
        ("dp-loda", "1"), ("dp-loda", "10"), ("dp-loda", "inf"), ("dp-lora", "10"), ("public-only", "0")]
    assert {"pair", "preset", "config_hash", "config", "seeds", "fid_mean", "fid_ci_low", "fid_ci_high", "fid_n",
            "accuracy_mean", "accuracy_ci_method", "fid_samples", "kid_std", "finetune_hours_mean"} <= set(rows[0])
    cell = rows[1]
    expected = mean_interval([0.70, 0.75, 0.80])
    assert cell["seeds"] == "3" and cell["accuracy_n"] == "3" and cell["accuracy_ci_method"] == "t"
    assert float(cell["accuracy_ci_low"]) == pytest.approx(expected.low)
    assert float(cell["accuracy_ci_high"]) == pytest.approx(expected.high)
    assert float(cell["finetune_hours_mean"]) == pytest.approx(0.2)
    assert rows[0]["accuracy_ci_low"] == "" and rows[0]["accuracy_ci_method"] == "none"  # one seed


def test_an_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="format"):
        build_leaderboard(None, tmp_path, fmt="pdf")


def test_the_command_merges_repeated_runs_options_in_the_format_asked(tmp_path):
    from click.testing import CliRunner

    from dpbench.cli import main

    _grid([_record("dp-loda", 10.0, 0, 50.0, 0.8)], tmp_path / "node1")
    _grid([_record("dp-loda", 10.0, 1, 60.0, 0.9)], tmp_path / "node2")
    result = CliRunner().invoke(main, ["leaderboard", "--runs", str(tmp_path / "node1"), "--runs",
                                       str(tmp_path / "node2"), "--output", str(tmp_path / "board"), "--format", "csv"])
    assert result.exit_code == 0, result.output
    (row,) = list(csv.DictReader((tmp_path / "board" / "LEADERBOARD.csv").open()))
    assert row["seeds"] == "2" and float(row["accuracy_mean"]) == pytest.approx(0.85)
