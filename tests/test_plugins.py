"""Plugin discovery through the entry-point group, broken and legacy plugins, and the documented contract."""
import inspect
import json

import pytest
from click.testing import CliRunner

import dpbench
from dpbench.api import hookspecs
from dpbench.api.registry import LOAD_PLUGINS_ENV, PluginAPIError, UnknownNameError, check_method_api, load_registry
from dpbench.cli import main
from tests.conftest import REPO, install_fake_distribution

HOOKS = {"dpbench_register_methods", "dpbench_register_pairs", "dpbench_register_evaluators",
         "dpbench_register_scopes", "dpbench_register_backbones", "dpbench_published_results"}


def test_builtins_register_through_entry_points():
    registry = load_registry()
    assert "dp-loda" in registry.methods
    assert "digits-mnist" in registry.pairs
    assert {"fid", "accuracy"} <= set(registry.evaluators)
    assert {"full", "attention", "lora", "loda"} <= set(registry.scopes)
    assert {"pixel", "latent"} <= set(registry.backbones)
    assert "dpdm-mnist-eps10" in registry.published
    for key in ("method:dp-loda", "scope:loda", "backbone:latent", "published:dpdm-mnist-eps10", "pair:digits-mnist"):
        origin = registry.origin[key]
        assert origin.distribution == "dpbench" and origin.version, key
    assert not [p for p in registry.plugins if p.error]


def test_unknown_name_suggests_the_closest():
    registry = load_registry()
    for lookup, typo, suggestion in ((registry.method, "dp-lodaa", "dp-loda"), (registry.scope, "lodaa", "loda"),
                                     (registry.backbone, "pixels", "pixel")):
        with pytest.raises(UnknownNameError) as err:
            lookup(typo)
        assert f"Did you mean '{suggestion}'" in str(err.value)


def test_broken_plugins_are_reported_and_skipped(plugin_path):
    install_fake_distribution(
        plugin_path, "broken-dpbench-plugin", "0.0.1",
        {"broken_import": "thirdparty_broken_import", "broken_hook": "thirdparty_broken_hook"},
        {
            "thirdparty_broken_import": "raise ImportError('missing dependency xyz')\n",
            "thirdparty_broken_hook": """
                import dpbench
                from dpbench.builtins.pair_digits_mnist import load_digits_mnist

                @dpbench.hookimpl
                def dpbench_register_pairs(register):
                    register(dpbench.PairSpec(name="half-registered", description="", image_size=28, channels=1,
                                              num_classes=10, load=load_digits_mnist))
                    raise RuntimeError("boom after registering one pair")
            """,
        },
    )
    registry = load_registry()
    errors = {p.name: p.error for p in registry.plugins if p.error}
    assert "missing dependency xyz" in errors["broken_import"]
    assert "boom" in errors["broken_hook"]
    assert "half-registered" not in registry.pairs  # a failing plugin leaves nothing behind
    assert "pair:half-registered" not in registry.origin
    assert "dp-loda" in registry.methods  # and the others still load

    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["broken_import"]["status"] == "error" and rows["dp_loda"]["status"] == "ok"
    assert rows["dp_loda"]["distribution"] == "dpbench"
    listed = CliRunner().invoke(main, ["list", "methods"])
    assert listed.exit_code == 0 and "dp-loda" in listed.stdout


def test_the_hooks_are_the_documented_contract():
    hooks = {name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("dpbench_")}
    assert hooks == HOOKS
    for hook in hooks:
        assert inspect.getdoc(getattr(hookspecs, hook)), f"{hook} has no docstring"
        assert list(inspect.signature(getattr(hookspecs, hook)).parameters) == ["register"]


def test_every_hook_is_documented_in_the_plugin_guide():
    """docs/plugins.md, the guide the API's migration hint points to, names every hook with its signature
    (tests/test_docs.py checks the rest of the documentation)."""
    text = (REPO / "docs" / "plugins.md").read_text()
    for hook in HOOKS:
        assert f"`{hook}(register)`" in text, f"docs/plugins.md does not document {hook}"


def test_registering_the_wrong_type_is_a_reported_error(plugin_path):
    install_fake_distribution(
        plugin_path, "wrong-type-plugin", "1.0", {"wrong_type": "thirdparty_wrong_type"},
        {"thirdparty_wrong_type": """
            import dpbench

            @dpbench.hookimpl
            def dpbench_register_methods(register):
                register("not a method")

            @dpbench.hookimpl
            def dpbench_register_scopes(register):
                register(object())
        """},
    )
    registry = load_registry()
    error = next(p.error for p in registry.plugins if p.name == "wrong_type")
    assert "expected a Method" in error


LEGACY_PLUGIN = """
import dpbench


class Legacy(dpbench.Method):
    name = "legacy"

    def configure(self, preset, pair):
        return {"steps": 10}

    def settings(self, preset, pair):
        return {"steps": 10}

    def train(self, ctx, config):
        raise AssertionError("never reached")


@dpbench.hookimpl
def dpbench_register_methods(register):
    register(Legacy())
"""


def test_a_method_written_for_the_0_1_api_is_refused_with_the_migration_hint(plugin_path):
    install_fake_distribution(plugin_path, "dpbench-legacy", "0.1.0", {"legacy": "thirdparty_legacy"},
                              {"thirdparty_legacy": LEGACY_PLUGIN})
    registry = load_registry()
    error = next(p.error for p in registry.plugins if p.name == "legacy")
    assert error.startswith("PluginAPIError") and "0.1 plugin API" in error and "docs/plugins.md" in error
    assert "legacy" not in registry.methods and "dp-loda" in registry.methods
    for method in registry.methods.values():  # every built-in passes the same check
        check_method_api(method)
    assert not hasattr(dpbench, "RunContext")  # no 0.1 shim: a plugin that imports it is refused at import


def test_a_train_with_the_wrong_signature_is_refused():
    from dataclasses import dataclass

    @dataclass
    class S:
        steps: int = dpbench.setting(1, "steps")

    class ThreeArguments(dpbench.Method):
        name = "three"
        Settings = S

        def settings(self, preset, pair):
            return S()

        def train(self, ctx, settings, ledger):
            raise AssertionError

    with pytest.raises(PluginAPIError, match="0.1 plugin API"):
        check_method_api(ThreeArguments())


def test_pinned_plugins_load_only_those_named(monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "dp_loda, scopes,nonexistent")
    registry = load_registry()
    assert set(registry.methods) == {"dp-loda"} and set(registry.scopes) == {"full", "attention", "lora", "loda"}
    assert not registry.pairs and not registry.backbones
    missing = next(p for p in registry.plugins if p.name == "nonexistent")
    assert LOAD_PLUGINS_ENV in missing.error
