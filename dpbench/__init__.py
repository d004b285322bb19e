"""dpbench: a plugin-based benchmark of differentially private fine-tuning of diffusion models.

Everything a plugin needs is importable from here; see docs/plugins.md.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pluggy

try:
    __version__ = version("dpbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

hookimpl = pluggy.HookimplMarker("dpbench")

from dpbench.api.context import EvalContext, MethodContext, PrivateSplit  # noqa: E402
from dpbench.version import API_VERSION, RemovedInAPI1Error, removed  # noqa: E402
from dpbench.api.settings import SettingError, setting  # noqa: E402
from dpbench.api.types import (  # noqa: E402
    Backbone,
    BackboneBuilder,
    Classifier,
    Evaluator,
    Generator,
    Method,
    MethodResult,
    Metric,
    PublishedResult,
    Scope,
)
from dpbench.data.types import FileStatus, ImageSet, PairData, PairSpec  # noqa: E402
from dpbench.privacy.engine import DPSettings  # noqa: E402

__all__ = [
    "__version__", "API_VERSION", "RemovedInAPI1Error", "hookimpl", "Method", "MethodResult", "MethodContext", "PrivateSplit", "DPSettings",
    "setting", "SettingError", "Generator", "Classifier", "Evaluator", "EvalContext", "Metric", "Scope", "Backbone",
    "BackboneBuilder", "PublishedResult", "PairSpec", "PairData", "ImageSet", "FileStatus",
]

_REMOVED = {"RunContext": "MethodContext", "PrivacyLedger": None}


def __getattr__(name: str):
    if name in _REMOVED:
        raise removed("dpbench", name, f"dpbench.{_REMOVED[name]}" if _REMOVED[name] else None)
    raise AttributeError(f"module 'dpbench' has no attribute '{name}'")
