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
from dpbench.api.registry import API_VERSION, MIGRATION_HINT  # noqa: E402
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
    "__version__", "API_VERSION", "hookimpl", "Method", "MethodResult", "MethodContext", "PrivateSplit", "DPSettings",
    "setting", "SettingError", "Generator", "Classifier", "Evaluator", "EvalContext", "Metric", "Scope", "Backbone",
    "BackboneBuilder", "PublishedResult", "PairSpec", "PairData", "ImageSet", "FileStatus",
]

_REMOVED = {"RunContext": "MethodContext", "PrivacyLedger": None}


class RemovedInAPI1Error(ImportError):
    """A name of the 0.1 plugin API. An ImportError, so `from dpbench import RunContext` keeps this message."""


def __getattr__(name: str):
    if name in _REMOVED:
        instead = f" Use dpbench.{_REMOVED[name]} instead." if _REMOVED[name] else ""
        raise RemovedInAPI1Error(f"dpbench.{name} was removed in plugin API {API_VERSION}.{instead} {MIGRATION_HINT}")
    raise AttributeError(f"module 'dpbench' has no attribute '{name}'")
