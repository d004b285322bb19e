"""Plugin discovery through the entry-point group, broken plugins, and the documented contract."""
import inspect
import json
import re

from click.testing import CliRunner

from dpbench import hookspecs
from dpbench.cli import main
from dpbench.plugins import UnknownNameError, load_registry
from tests.conftest import REPO, install_fake_distribution


def test_builtins_register_through_entry_points():
    registry = load_registry()
    assert "dp-loda" in registry.methods
    assert "digits-mnist" in registry.pairs
    assert {"fid", "accuracy"} <= set(registry.evaluators)
    origin = registry.origin["method:dp-loda"]
    assert origin.distribution == "dpbench" and origin.version


def test_unknown_name_suggests_the_closest():
    registry = load_registry()
    try:
        registry.method("dp-lodaa")
    except UnknownNameError as exc:
        assert "Did you mean 'dp-loda'" in str(exc)
    else:
        raise AssertionError("no error for an unknown method")


def test_broken_plugins_are_reported_and_skipped(plugin_path):
    install_fake_distribution(
        plugin_path, "broken-dpbench-plugin", "0.0.1",
        {"broken_import": "thirdparty_broken_import", "broken_hook": "thirdparty_broken_hook"},
        {
            "thirdparty_broken_import": "raise ImportError('missing dependency xyz')\n",
            "thirdparty_broken_hook": """
                import dpbench
                from dpbench.data.embedded import load_digits_mnist

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
    assert "dp-loda" in registry.methods  # and the others still load

    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["broken_import"]["status"] == "error" and rows["dp_loda"]["status"] == "ok"
    assert rows["dp_loda"]["distribution"] == "dpbench"
    listed = CliRunner().invoke(main, ["list", "methods"])
    assert listed.exit_code == 0 and "dp-loda" in listed.stdout


def test_every_hook_is_documented_in_the_readme():
    readme = (REPO / "README.md").read_text()
    hooks = [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("dpbench_")]
    assert len(hooks) == 3
    for hook in hooks:
        assert re.search(rf"^#+ .*`{hook}", readme, re.MULTILINE), f"README has no section for {hook}"
        assert inspect.getdoc(getattr(hookspecs, hook)), f"{hook} has no docstring"


def test_registering_the_wrong_type_is_a_reported_error(plugin_path):
    install_fake_distribution(
        plugin_path, "wrong-type-plugin", "1.0", {"wrong_type": "thirdparty_wrong_type"},
        {"thirdparty_wrong_type": """
            import dpbench

            @dpbench.hookimpl
            def dpbench_register_methods(register):
                register("not a method")
        """},
    )
    registry = load_registry()
    error = next(p.error for p in registry.plugins if p.name == "wrong_type")
    assert "expected a Method" in error
