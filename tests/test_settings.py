"""Typed settings: `--set` parses by the setting's declared type; bad values exit 2 naming key, type and valid keys."""
import json
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

import dpbench
from dpbench.api.registry import load_registry
from dpbench.api.settings import SettingError, apply_overrides, check, describe
from dpbench.cli import main


@dataclass(frozen=True)
class Example:
    steps: int = dpbench.setting(10, "steps", minimum=1)
    lr: float = dpbench.setting(1e-3, "learning rate", above=0)
    epochs: float | None = dpbench.setting(None, "epochs", above=0)
    accountant: str = dpbench.setting("rdp", "accountant", choices=("rdp", "prv"))
    public_init: bool = dpbench.setting(False, "warm start")
    p: float = dpbench.setting(0.1, "probability", minimum=0, below=1)


@pytest.mark.parametrize("key, raw, expected", [
    ("steps", "300", 300), ("lr", "1e-4", 1e-4), ("lr", "2", 2.0),
    ("epochs", "null", None), ("epochs", "2.5", 2.5), ("accountant", "prv", "prv"), ("public_init", "true", True),
    ("public_init", "0", False),
])
def test_text_is_parsed_by_type(key, raw, expected):
    value = getattr(apply_overrides(Example(), {key: raw}), key)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("key, raw, words", [
    ("steps", "1.5", "expected int, got '1.5'"),
    ("steps", "ten", "expected int"),
    ("steps", "0", "must be >= 1"),
    ("lr", "fast", "expected float"),
    ("lr", "0", "must be > 0"),
    ("epochs", "nan", "expected float or null"),
    ("accountant", "moments", "expected one of ['rdp', 'prv']"),
    ("public_init", "maybe", "expected bool"),
    ("p", "1", "must be < 1"),
    ("stepz", "3", "unknown key"),
])
def test_bad_values_name_key_type_and_valid_keys(key, raw, words):
    with pytest.raises(SettingError) as info:
        apply_overrides(Example(), {key: raw})
    message = str(info.value)
    assert f"setting '{key}'" in message and words in message
    assert "Valid keys: accountant, epochs, lr, p, public_init, steps" in message


def test_typed_values_are_checked_too():
    with pytest.raises(SettingError, match="expected int"):
        apply_overrides(Example(), {"steps": 1.5})
    with pytest.raises(SettingError, match="expected int"):
        apply_overrides(Example(), {"steps": True})
    assert apply_overrides(Example(), {"lr": 1}).lr == 1.0


def test_every_builtin_preset_passes_its_own_checks():
    registry = load_registry()
    for method in registry.methods.values():
        for preset in ("smoke", "default", "paper"):
            for pair in registry.pairs.values():
                check(method.settings(preset, pair))


def test_describe_lists_type_default_and_help():
    rows = {row["name"]: row for row in describe(Example())}
    assert rows["epochs"]["type"] == "float or null" and rows["epochs"]["default"] is None
    assert rows["accountant"]["choices"] == ["rdp", "prv"] and rows["lr"]["help"] == "learning rate"


def test_cli_set_ill_typed_value_exits_2_with_the_reason(tmp_path):
    result = CliRunner().invoke(main, ["run", "--method", "dp-loda", "--pair", "digits-mnist", "--eps", "10",
                                       "--preset", "smoke", "--set", "steps=1.5", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "setting 'steps': expected int, got '1.5'" in result.output and "Valid keys:" in result.output
    assert not (tmp_path / "runs").exists()


def test_cli_list_methods_json_prints_every_setting():
    result = CliRunner().invoke(main, ["list", "methods", "--json"])
    assert result.exit_code == 0, result.output
    methods = {m["name"]: m for m in json.loads(result.stdout)}
    loda = {row["name"]: row for row in methods["dp-loda"]["settings"]}
    from dpbench.builtins.dp_loda import PRESETS

    assert loda["steps"]["type"] == "int" and loda["steps"]["help"]
    assert loda["steps"]["default"] == PRESETS["default"].steps and loda["lr"]["default"] == PRESETS["default"].lr
    assert loda["scope"]["default"] == "loda" and loda["epochs"]["type"] == "float or null"
    for method in methods.values():
        assert all({"name", "type", "default", "help"} <= set(row) for row in method["settings"])
