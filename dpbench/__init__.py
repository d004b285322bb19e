"""dpbench: a plugin-based benchmark of differentially private fine-tuning of diffusion models."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pluggy

try:
    __version__ = version("dpbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

hookimpl = pluggy.HookimplMarker("dpbench")

from dpbench.data.types import FileStatus, ImageSet, PairData, PairSpec  # noqa: E402
from dpbench.interface import (  # noqa: E402
    Classifier,
    EvalContext,
    Evaluator,
    Generator,
    Method,
    MethodResult,
    Metric,
    RunContext,
)
from dpbench.privacy.ledger import PrivacyLedger  # noqa: E402

__all__ = [
    "__version__", "hookimpl", "Method", "MethodResult", "RunContext", "Generator", "Classifier",
    "Evaluator", "EvalContext", "Metric", "PairSpec", "PairData", "ImageSet", "FileStatus", "PrivacyLedger",
]
