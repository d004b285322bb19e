"""dpbench: a plugin-based benchmark of differentially private fine-tuning of diffusion models.

Everything a plugin needs is importable from here; see docs/plugins.md. The names are loaded on first use
(PEP 562), so `import dpbench` and `dpbench --help` load neither torch nor Opacus; `dpbench.hookimpl` is
eager (pluggy only).
"""
from __future__ import annotations

import importlib

import pluggy

from dpbench.version import API_VERSION

hookimpl = pluggy.HookimplMarker("dpbench")

# public name -> the module that defines it
_LAZY = {
    **dict.fromkeys(("EvalContext", "MethodContext", "PrivateSplit"), "dpbench.api.context"),
    **dict.fromkeys(("SettingError", "setting"), "dpbench.api.settings"),
    **dict.fromkeys(("Backbone", "BackboneBuilder", "Classifier", "Evaluator", "Generator", "Method", "MethodResult",
                     "Metric", "PublishedResult", "Scope"), "dpbench.api.types"),
    **dict.fromkeys(("FileStatus", "ImageSet", "PairData", "PairSpec"), "dpbench.data.types"),
    "DPSettings": "dpbench.privacy.engine",
}

__all__ = [
    "__version__", "API_VERSION", "hookimpl", "Method", "MethodResult", "MethodContext", "PrivateSplit", "DPSettings",
    "setting", "SettingError", "Generator", "Classifier", "Evaluator", "EvalContext", "Metric", "Scope", "Backbone",
    "BackboneBuilder", "PublishedResult", "PairSpec", "PairData", "ImageSet", "FileStatus",
]

def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dpbench")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+local"


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name == "__version__":
        value = _version()
    else:
        raise AttributeError(f"module 'dpbench' has no attribute '{name}'")
    globals()[name] = value  # the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
