"""Third parties extend dpbench without touching its code: docs/plugins.md's minimal method plugin runs through
`dpbench run` and `dpbench leaderboard`, and a BitFit scope plugin (plugins/dpbench-bitfit) runs on the built-in
pixel backbone."""
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from dpbench.cli import main
from dpbench.privacy.accountant import epsilon_of_history
from dpbench.run.records import read_records, validate_record
from tests.conftest import REPO, install_fake_distribution


def _readme_plugin_source() -> str:
    """The complete example plugin of docs/plugins.md (it lived in the README before)."""
    page = (REPO / "docs" / "plugins.md").read_text()
    section = page.split("## A complete minimal method plugin", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def _run(runner, tmp_path, cache, *args):
    return runner.invoke(main, ["run", "--pair", "digits-mnist", "--out", str(tmp_path / "runs"),
                                "--cache-dir", str(cache), "--json", *args])


@pytest.mark.slow  # three whole runs, one under the default preset
def test_readme_plugin_runs_through_run_and_leaderboard(plugin_path, tmp_path, shared_cache):
    install_fake_distribution(plugin_path, "dpbench-mean-image", "0.1.0", {"mean_image": "thirdparty_mean_image"},
                              {"thirdparty_mean_image": _readme_plugin_source()})
    runner = CliRunner()
    listed = json.loads(runner.invoke(main, ["list", "methods", "--json"]).stdout)
    assert any(m["name"] == "dp-mean-image" and m["plugin"] == "mean_image" for m in listed)

    cell = ["--method", "dp-mean-image", "--eps", "1", "--set", "steps=10"]
    common = [*cell, "--evaluator", "accuracy"]
    smoke = _run(runner, tmp_path, shared_cache, *common, "--preset", "smoke")
    assert smoke.exit_code == 0, smoke.output
    record = json.loads(smoke.stdout)
    assert record["status"] == "completed"
    assert record["method"]["plugin"] == {"name": "mean_image", "distribution": "dpbench-mean-image", "version": "0.1.0"}
    assert record["method"]["settings"]["steps"] == 10 and record["method"]["overrides"] == {"steps": "10"}
    privacy = record["privacy"]
    assert privacy["steps"] == 10 and privacy["delta"] == 1e-5 and privacy["epsilon"] <= 1.0
    history = [(s["noise_multiplier"], s["sample_rate"], s["steps"]) for s in privacy["stages"]]
    assert epsilon_of_history(history, 1e-5, privacy["accountant"]) == privacy["epsilon"]
    assert 0.0 <= record["metrics"]["accuracy"]["value"] <= 1.0

    # The same cell under the default preset, and under another config, lands beside it instead of over it. The
    # default run's placement is under test, not its scores: the copy check stands in for the accuracy evaluator,
    # whose default-preset public-only reference alone is 60 classifier epochs (6 fits x 10) over 1,797 images.
    default = _run(runner, tmp_path, shared_cache, *cell, "--evaluator", "memorisation", "--preset", "default")
    other = _run(runner, tmp_path, shared_cache, *common, "--preset", "smoke", "--set", "batch_size=128")
    assert default.exit_code == 0 and other.exit_code == 0, default.output + other.output
    records = read_records(tmp_path / "runs")
    assert sorted((r["preset"], r["method"]["overrides"].get("batch_size", "")) for r in records) == [
        ("default", ""), ("smoke", ""), ("smoke", "128")]
    assert len({r["_path"] for r in records}) == 3 and len({r["config_hash"] for r in records}) == 3
    for r in records:
        validate_record({k: v for k, v in r.items() if k != "_path"})
        assert (Path(r["_path"]).parent / "samples.png").exists()

    board = runner.invoke(main, ["leaderboard", "--runs", str(tmp_path / "runs"), "--output", str(tmp_path / "lb")])
    assert board.exit_code == 0, board.output
    text = (tmp_path / "lb" / "LEADERBOARD.md").read_text()
    details = "".join(part for part in text.split("### ") if ": details" in part.split("\n")[0])
    rows = [line for line in details.splitlines() if line.startswith("| dp-mean-image")]
    assert len(rows) == 3
    assert any("| smoke " in r and "batch_size=128" in r for r in rows)
    assert any("| default " in r and "steps=10 (" in r for r in rows)
    assert sum("| smoke " in r for r in rows) == 2


@pytest.mark.slow  # a real dp-loda run (with the BitFit scope)
def test_bitfit_scope_plugin_runs_on_the_builtin_pixel_backbone(plugin_path, tmp_path, shared_cache):
    source = (REPO / "plugins" / "dpbench-bitfit" / "dpbench_bitfit.py").read_text()
    install_fake_distribution(plugin_path, "dpbench-bitfit", "0.1.0", {"bitfit": "thirdparty_bitfit"},
                              {"thirdparty_bitfit": source})
    runner = CliRunner()
    scopes = json.loads(runner.invoke(main, ["list", "scopes", "--json"]).stdout)
    assert {"name": "bitfit", "plugin": "bitfit"}.items() <= next(s for s in scopes if s["name"] == "bitfit").items()

    result = _run(runner, tmp_path, shared_cache, "--method", "dp-loda", "--eps", "10", "--preset", "smoke",
                  "--evaluator", "accuracy", "--set", "scope=bitfit")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["status"] == "completed" and record["method"]["notes"]["scope"] == "bitfit"
    cost = record["cost"]
    assert 0 < cost["trainable_parameters"] < 0.1 * cost["total_parameters"]  # biases only
    assert record["privacy"]["epsilon"] <= 10


def test_unknown_scope_is_bad_input_with_a_suggestion(tmp_path, shared_cache):
    result = _run(CliRunner(), tmp_path, shared_cache, "--method", "dp-loda", "--eps", "10", "--preset", "smoke",
                  "--set", "scope=lodaa")
    assert result.exit_code == 2 and "Did you mean 'loda'" in result.output
