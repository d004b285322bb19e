"""The layout keeps its promises: the core never imports a plugin and names no pair or method; plugins are
pinned by $DPBENCH_LOAD_PLUGINS; a plugin written for API 0.1 is refused with a message that says what changed."""
import ast
import re
from pathlib import Path

import pytest

import dpbench
from dpbench.api.registry import LOAD_PLUGINS_ENV, load_registry
from tests.conftest import REPO, install_fake_distribution

PACKAGE = REPO / "dpbench"
BUILTIN_NAMES = ["digits-mnist", "svhn-mnist", "imagenet32-cifar10", "imagenet-celeba", "dp-loda", "dp-lora",
                 "dp-ldm", "dp-diffusion", "dp-sgd", "public-only"]


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def _core_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "builtins" not in p.relative_to(PACKAGE).parts)


def test_core_never_imports_a_plugin():
    modules = _core_modules()
    assert modules, f"no core modules under {PACKAGE}"
    offenders = []
    for path in modules:
        bad = [n for n in _imports(path) if n.startswith("dpbench.builtins") or n.startswith("dpbench_plugins")]
        if bad:
            offenders.append(f"{path.relative_to(REPO)} imports {bad}")
    assert not offenders, "core modules import a plugin:\n" + "\n".join(offenders)


def test_core_names_no_pair_and_no_method():
    modules = _core_modules()
    assert modules, f"no core modules under {PACKAGE}"
    offenders = []
    for path in modules:
        lines = path.read_text().splitlines()
        if path.name == "cli.py":  # the --help examples show real commands; they are text, not code paths
            lines = [line for line in lines if not re.match(r"\s+dpbench ", line)]
        text = "\n".join(lines)
        named = [name for name in BUILTIN_NAMES if re.search(rf"['\"]{re.escape(name)}['\"]", text)]
        if named:
            offenders.append(f"{path.relative_to(REPO)} names {named}")
    assert not offenders, "core modules name a built-in pair or method:\n" + "\n".join(offenders)


def test_stages_have_folders_and_the_old_package_is_gone():
    for stage in ("api", "run", "data", "models", "privacy", "pretrain", "finetune", "eval", "report", "builtins"):
        assert (PACKAGE / stage / "__init__.py").exists(), stage
    assert not (REPO / "plugins" / "__init__.py").exists()
    with pytest.raises(ModuleNotFoundError):
        __import__("dpbench_plugins")


def test_load_plugins_env_pins_the_set(monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "dp_loda,digits_mnist,scopes,backbones,missing_one")
    registry = load_registry()
    assert set(registry.methods) == {"dp-loda"} and set(registry.pairs) == {"digits-mnist"}
    assert registry.evaluators == {}
    missing = [p for p in registry.plugins if p.name == "missing_one"]
    assert missing and "no such plugin" in missing[0].error


LEGACY_PLUGIN = '''
import dpbench

class OldMethod(dpbench.Method):
    name = "old-style"
    def configure(self, preset, pair):
        return {"steps": 10}
    def settings(self, preset, pair):
        return None
    def train(self, ctx, config):
        from dpbench.privacy.engine import DPConfig
        return dpbench.MethodResult(None, ledger=None, trainable_parameters=0, total_parameters=0)

@dpbench.hookimpl
def dpbench_register_methods(register):
    register(OldMethod())
'''

LEGACY_IMPORT_PLUGIN = '''
import dpbench
from dpbench import RunContext
'''


def test_a_plugin_written_for_api_0_1_is_refused_with_what_changed(plugin_path):
    install_fake_distribution(plugin_path, "dpbench-old", "0.1.0", {"old": "thirdparty_old", "old_import": "thirdparty_old_import"},
                              {"thirdparty_old": LEGACY_PLUGIN, "thirdparty_old_import": LEGACY_IMPORT_PLUGIN})
    registry = load_registry()
    assert "old-style" not in registry.methods
    errors = {p.name: p.error for p in registry.plugins}
    assert "written for the dpbench 0.1 plugin API" in errors["old"] and "docs/plugins.md" in errors["old"]
    assert "removed in plugin API 1.0" in errors["old_import"] and "MethodContext" in errors["old_import"]
    assert dpbench.API_VERSION == "1.0"
    assert "dp-loda" in registry.methods  # the rest still loads
