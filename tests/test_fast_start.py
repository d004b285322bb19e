"""Listing what is registered loads neither torch nor Opacus: the built-in plugin modules, the plugin API and
the registry import light, and heavy code loads inside train/load/build/evaluate (timed by
benchmarks/startup_time.py, never here)."""
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # subprocesses

CHECK = """
import sys
from dpbench.api.registry import load_registry
registry = load_registry()
assert not [p.error for p in registry.plugins if p.error], [p.error for p in registry.plugins if p.error]
assert registry.methods and registry.pairs and registry.scopes and registry.backbones and registry.evaluators
for method in registry.methods.values():  # settings are declared without torch too
    method.settings("default", registry.pairs[sorted(registry.pairs)[0]])
heavy = sorted(name for name in ("torch", "opacus", "torch_fidelity", "scipy") if name in sys.modules)
assert heavy == [], heavy
"""


def test_loading_every_plugin_and_its_settings_imports_no_torch():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_list_methods_imports_no_torch():
    code = ("import sys, runpy; sys.argv = ['dpbench', 'list', 'methods']\n"
            "try:\n    runpy.run_module('dpbench', run_name='__main__')\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules and 'opacus' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "dp-loda" in result.stdout
