"""CLI input errors and exit codes: bad input exits 2 and writes nothing."""
import json

import pytest
from click.testing import CliRunner

from dpbench.cli import main


def _run(args, tmp_path):
    return CliRunner().invoke(main, ["run", "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), *args])


@pytest.mark.parametrize("args, message", [
    (["--method", "dp-lodaa", "--pair", "digits-mnist", "--eps", "10"], "Did you mean 'dp-loda'"),
    (["--method", "dp-loda", "--pair", "digits-mnst", "--eps", "10"], "Did you mean 'digits-mnist'"),
    (["--method", "dp-loda", "--pair", "digits-mnist", "--eps", "10", "--evaluator", "fidd"], "Did you mean 'fid'"),
    (["--method", "dp-loda", "--pair", "digits-mnist", "--eps", "0"], "epsilon must be > 0"),
    (["--method", "dp-loda", "--pair", "digits-mnist", "--eps", "-1"], "epsilon must be > 0"),
    (["--method", "dp-loda", "--pair", "digits-mnist", "--eps", "ten"], "'ten' is not a valid float"),
    (["--method", "dp-loda", "--pair", "digits-mnist", "--eps", "nan"], "epsilon must be > 0"),
    (["--method", "dp-loda", "--pair", "digits-mnist", "--eps", "1", "--delta", "0"], "delta must be in (0, 1)"),
    (["--method", "dp-loda", "--pair", "digits-mnist", "--eps", "1", "--delta", "1"], "delta must be in (0, 1)"),
    (["--method", "dp-loda", "--pair", "digits-mnist", "--eps", "1", "--set", "rnk=8"], "unknown setting(s) ['rnk']"),
    (["--method", "dp-loda", "--pair", "digits-mnist", "--eps", "1", "--set", "rank"], "is not KEY=VALUE"),
    (["--method", "dp-loda", "--pair", "digits-mnist", "--eps", "1", "--preset", "huge"], "'huge' is not one of"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, message):
    result = _run(args, tmp_path)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "runs").exists()


def test_list_json_and_help_examples():
    runner = CliRunner()
    methods = json.loads(runner.invoke(main, ["list", "methods", "--json"]).stdout)
    assert any(m["name"] == "dp-loda" and m["produces"] == "generator" for m in methods)
    pairs = json.loads(runner.invoke(main, ["list", "pairs", "--json"]).stdout)
    digits = next(p for p in pairs if p["name"] == "digits-mnist")
    assert (digits["image_size"], digits["channels"], digits["num_classes"]) == (28, 1, 10)
    help_text = runner.invoke(main, ["run", "--help"]).stdout
    assert "Examples:" in help_text and "dpbench run --method dp-loda" in help_text
