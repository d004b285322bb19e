"""CLI input errors and exit codes: bad input exits 2 and writes nothing."""
import json

import pytest
from click.testing import CliRunner

from dpbench.cli import main


def _run(args, tmp_path):
    return CliRunner().invoke(main, ["run", "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), *args])


LODA = ["--method", "dp-loda", "--pair", "digits-mnist"]


@pytest.mark.parametrize("args, message", [
    (["--method", "dp-lodaa", "--pair", "digits-mnist", "--eps", "10"], "Did you mean 'dp-loda'"),
    (["--method", "dp-loda", "--pair", "digits-mnst", "--eps", "10"], "Did you mean 'digits-mnist'"),
    ([*LODA, "--eps", "10", "--evaluator", "fidd"], "Did you mean 'fid'"),
    ([*LODA, "--eps", "0"], "epsilon must be > 0"),
    ([*LODA, "--eps", "-1"], "epsilon must be > 0"),
    ([*LODA, "--eps", "ten"], "'ten' is not a valid float"),
    ([*LODA, "--eps", "nan"], "epsilon must be > 0"),
    ([*LODA, "--eps", "1", "--delta", "0"], "delta must be in (0, 1)"),
    ([*LODA, "--eps", "1", "--delta", "1"], "delta must be in (0, 1)"),
    ([*LODA, "--eps", "1", "--set", "rnk=8"], "setting 'rnk': unknown key"),
    ([*LODA, "--eps", "1", "--set", "rank"], "is not KEY=VALUE"),
    ([*LODA, "--eps", "1", "--preset", "huge"], "'huge' is not one of"),
    # --set values are parsed by the setting's declared type and checked against its constraints
    ([*LODA, "--eps", "1", "--set", "rank=abc"], "setting 'rank': expected int, got 'abc'"),
    ([*LODA, "--eps", "1", "--set", "rank=2.5"], "setting 'rank': expected int, got '2.5'"),
    ([*LODA, "--eps", "1", "--set", "lr=fast"], "setting 'lr': expected float, got 'fast'"),
    ([*LODA, "--eps", "1", "--set", "epochs=many"], "setting 'epochs': expected float or null, got 'many'"),
    ([*LODA, "--eps", "1", "--set", "rank=0"], "setting 'rank': must be >= 1, got 0"),
    ([*LODA, "--eps", "1", "--set", "accountant=gdp"], "setting 'accountant': expected one of ['rdp', 'prv']"),
    ([*LODA, "--eps", "1", "--set", "scope=everything"], "unknown scope 'everything'"),
    ([*LODA, "--eps", "1", "--set", "backbone=voxel"], "unknown backbone 'voxel'"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, message):
    result = _run(args, tmp_path)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "runs").exists()


def test_a_bad_setting_names_the_valid_keys(tmp_path):
    result = _run([*LODA, "--eps", "1", "--set", "rank=abc"], tmp_path)
    assert result.exit_code == 2
    valid = result.output.split("Valid keys:")[1]
    for key in ("rank", "steps", "batch_size", "noise_multiplicity", "scope", "backbone"):
        assert key in valid
    assert not (tmp_path / "runs").exists()


def test_list_json_and_help_examples():
    runner = CliRunner()
    methods = json.loads(runner.invoke(main, ["list", "methods", "--json"]).stdout)
    loda = next(m for m in methods if m["name"] == "dp-loda")
    assert loda["produces"] == "generator"
    settings = {s["name"]: s for s in loda["settings"]}  # every setting with its type, default and help
    assert settings["rank"]["type"] == "int" and settings["rank"]["default"] == 4 and settings["rank"]["minimum"] == 1
    assert settings["scope"]["default"] == "loda" and settings["epochs"]["type"] == "float or null"
    assert all(s["help"] for s in settings.values())
    pairs = json.loads(runner.invoke(main, ["list", "pairs", "--json"]).stdout)
    digits = next(p for p in pairs if p["name"] == "digits-mnist")
    assert (digits["image_size"], digits["channels"], digits["num_classes"]) == (28, 1, 10)
    help_text = runner.invoke(main, ["run", "--help"]).stdout
    assert "Examples:" in help_text and "dpbench run --method dp-loda" in help_text


@pytest.mark.parametrize("kind, expected", [
    ("scopes", {"full", "attention", "lora", "loda"}),
    ("backbones", {"pixel", "latent"}),
    ("evaluators", {"fid", "accuracy"}),
])
def test_list_scopes_backbones_and_evaluators(kind, expected):
    result = CliRunner().invoke(main, ["list", kind, "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert expected <= set(rows)
    assert all(rows[name]["description"] and rows[name]["plugin"] for name in expected)
    table = CliRunner().invoke(main, ["list", kind])
    assert table.exit_code == 0 and all(name in table.stdout for name in expected)
