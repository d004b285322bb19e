"""CLI input errors and exit codes: bad input exits 2 and writes nothing."""
import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from dpbench.cli import main
from dpbench.cli_options import exit_codes, list_option


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
    ([*LODA, "--eps", "1", "--set", "rnk=8"], "setting 'rnk': unknown key; did you mean 'scope.rank'?"),
    ([*LODA, "--eps", "1", "--set", "rank"], "is not KEY=VALUE"),
    ([*LODA, "--eps", "1", "--preset", "huge"], "'huge' is not one of"),
    # --set values are parsed by the setting's declared type and checked against its constraints
    ([*LODA, "--eps", "1", "--set", "scope.rank=abc"], "setting 'scope.rank': expected int, got 'abc'"),
    ([*LODA, "--eps", "1", "--set", "scope.rank=2.5"], "setting 'scope.rank': expected int, got '2.5'"),
    ([*LODA, "--eps", "1", "--set", "lr=fast"], "setting 'lr': expected float, got 'fast'"),
    ([*LODA, "--eps", "1", "--set", "epochs=many"], "setting 'epochs': expected float or null, got 'many'"),
    ([*LODA, "--eps", "1", "--set", "scope.rank=0"], "setting 'scope.rank': must be >= 1, got 0"),
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
    result = _run([*LODA, "--eps", "1", "--set", "steps=abc"], tmp_path)
    assert result.exit_code == 2
    valid = result.output.split("Valid keys:")[1]
    for key in ("scope.rank", "scope.slope", "steps", "batch_size", "noise_multiplicity", "scope", "backbone"):
        assert key in valid
    nested = _run([*LODA, "--eps", "1", "--set", "scope.rank=abc"], tmp_path)  # a scope's key: the scope's keys
    assert nested.exit_code == 2 and "Valid keys: scope.rank, scope.slope" in " ".join(nested.output.split())
    assert not (tmp_path / "runs").exists()


def test_list_json_and_help_examples():
    runner = CliRunner()
    methods = json.loads(runner.invoke(main, ["list", "methods", "--json"]).stdout)
    loda = next(m for m in methods if m["name"] == "dp-loda")
    assert loda["produces"] == "generator"
    settings = {s["name"]: s for s in loda["settings"]}  # every setting with its type, default and help
    rank = settings["scope.rank"]  # the scope's own knob, as `--set scope.rank=N` sets it
    assert rank["type"] == "int" and rank["default"] == 4 and rank["minimum"] == 1
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


def _commands(group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def test_every_option_of_every_command_has_help():
    missing = [f"dpbench {' '.join(path)} {param.opts[0]}" for path, command in _commands(main)
               for param in command.params if isinstance(param, click.Option) and not (param.help or "").strip()]
    assert not missing, missing
    assert all(command.help for _, command in _commands(main))


def test_one_name_per_thing_across_commands():
    options = {param.opts[0]: param for _, command in _commands(main) for param in command.params
               if isinstance(param, click.Option) and not param.hidden}
    assert "--output" not in options and "--out" in options  # --out everywhere (--output: a hidden old name)
    from dpbench.api.types import PRESETS
    from dpbench.cli_options import PRESET_NAMES
    assert set(PRESET_NAMES) == set(PRESETS)


@pytest.mark.parametrize("args", [["--x", "1,5"], ["--x", "1", "--x", "5"], ["--x", "1,", "--x", " 5"]])
def test_list_options_take_commas_repeats_or_both(args):
    @click.command()
    @list_option("--x", item=float, help="x")
    def command(x):
        click.echo(json.dumps(x))

    result = CliRunner().invoke(command, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [1.0, 5.0]
    bad = CliRunner().invoke(command, ["--x", "1,y"])
    assert bad.exit_code == 2 and "'y' is not a valid float" in bad.output


def test_sweep_lists_mean_the_same_comma_separated_or_repeated(tmp_path):
    def cells(*args):
        result = CliRunner().invoke(main, ["sweep", "--pairs", "digits-mnist", "--out", str(tmp_path / "runs"),
                                           "--preset", "smoke", "--dry-run", "--json", *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    commas = cells("--methods", "dp-loda,dp-sgd", "--eps", "1,5", "--seeds", "0,1")
    repeats = cells("--methods", "dp-loda", "--methods", "dp-sgd", "--eps", "1", "--eps", "5", "--seeds", "0",
                    "--seeds", "1")
    assert commas == repeats
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("error, code, shown", [
    ("unknown", 2, "Usage:"), ("run-input", 2, "Usage:"), ("sweep-input", 2, "Usage:"), ("setting", 2, "Usage:"),
    ("device", 2, "Usage:"), ("data-missing", 2, "Error: boom"), ("launched", 1, "Error: boom"),
])
def test_one_mapping_from_errors_to_exit_codes(error, code, shown):
    from dpbench.api.registry import UnknownNameError
    from dpbench.api.settings import SettingError
    from dpbench.data.types import DataMissingError
    from dpbench.run.environment import DeviceUnavailableError
    from dpbench.run.runner import LaunchedRunError, RunInputError
    from dpbench.sweep.grid_spec import SweepInputError

    errors = {"unknown": UnknownNameError("method", "boom", []), "run-input": RunInputError("boom"),
              "sweep-input": SweepInputError("boom"), "setting": SettingError("boom"),
              "device": DeviceUnavailableError("boom"), "data-missing": DataMissingError("boom"),
              "launched": LaunchedRunError("boom")}

    @click.command()
    @exit_codes()
    def command():
        raise errors[error]

    result = CliRunner().invoke(command, [])
    assert result.exit_code == code and shown in result.output and "boom" in result.output, result.output
    assert "Traceback" not in result.output


def test_show_prints_each_setting_under_every_preset():
    result = CliRunner().invoke(main, ["show", "dp-loda"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "presets: smoke, default, paper" in result.stdout
    header = next(line for line in lines if line.startswith("setting"))
    assert header.split()[:5] == ["setting", "type", "smoke", "default", "paper"]
    steps = next(line for line in lines if line.startswith("steps "))
    assert steps.split()[:5] == ["steps", "int", "4", "200", "100"] and "minimum 1" in steps
    assert "DP-SGD steps" in lines[lines.index(steps) + 1]  # its help, indented below


def test_show_json_has_every_row_of_describe_with_its_default_per_preset():
    from dpbench.api.registry import load_registry
    from dpbench.api.settings import describe

    result = CliRunner().invoke(main, ["show", "dp-loda", "--json"])
    assert result.exit_code == 0, result.output
    sheet = json.loads(result.stdout)
    assert sheet["name"] == "dp-loda" and sheet["presets"] == ["smoke", "default", "paper"]
    registry = load_registry()
    method, pair = registry.method("dp-loda"), registry.pair(sheet["pair"])
    rows = {row["name"]: row for row in sheet["settings"]}
    for preset in sheet["presets"]:
        described = describe(method.settings(preset, pair))
        assert [r["name"] for r in described] == list(rows)  # nested rows (`scope.rank`) too, in describe's order
        for row in described:
            assert rows[row["name"]]["defaults"][preset] == row["default"]
            assert rows[row["name"]]["type"] == row["type"] and rows[row["name"]]["help"] == row["help"]
    assert rows["steps"]["defaults"] == {"smoke": 4, "default": 200, "paper": 100} and rows["steps"]["minimum"] == 1


def test_show_an_unknown_method_exits_2_with_a_suggestion():
    result = CliRunner().invoke(main, ["show", "dp-lodaa"])
    assert result.exit_code == 2 and "Did you mean 'dp-loda'" in result.output


def _modules_loaded(*args):
    """The modules a fresh interpreter imported running `args` (from `python -X importtime`)."""
    done = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done, {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.slow
def test_import_dpbench_loads_no_torch():
    done = subprocess.run([sys.executable, "-c", "import dpbench, sys; assert 'torch' not in sys.modules; "
                           "assert 'opacus' not in sys.modules; dpbench.hookimpl"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_help_loads_neither_torch_nor_opacus_nor_a_plugin():
    done, modules = _modules_loaded("-m", "dpbench", "--help")
    assert "Usage: dpbench" in done.stdout and "show" in done.stdout
    assert "dpbench.cli" in modules
    assert not {"torch", "opacus", "scipy", "dpbench.api.hookspecs"} & modules
    assert not [m for m in modules if m.startswith("dpbench.builtins")]
