"""Which per-example gradient implementation a DP engine uses, and how a step is chunked: as the trainable
scope declares (api.types.Scope), or picked by the engine's `supports()` check. The engine names no scope.

"auto" picks ghost clipping wherever it can handle the model and the loss, else vmap. Ghost was the fastest, or
within the noise of the fastest, for every built-in scope and K, with the lowest peak memory
(`python benchmarks/dp_step.py --k 1 4 --json`, benchmarks/RESULTS.md, "DP step by implementation (issue 12)");
vmap supports any model and loss.
"""
from __future__ import annotations

from torch import nn

from dpbench.privacy.per_example import IMPLEMENTATIONS, supports

AUTO = "auto"
CHOICES = (AUTO, *IMPLEMENTATIONS)
AUTO_ORDER = ("ghost", "vmap")  # what "auto" tries, first supported wins

ROWS, EXAMPLES = "rows", "examples"
CHUNKINGS = (ROWS, EXAMPLES)
# What a chunk of the DP step holds at K > 1 (at K = 1 both are physical_batch_size examples):
#   ROWS: physical_batch_size // K examples (at least 1), the rows of a K = 1 chunk, so peak memory is flat in K;
#   EXAMPLES: physical_batch_size examples with all K draws of each (K times the rows), as the non-private step runs.


def examples_per_chunk(chunking: str, physical_batch_size: int, noise_multiplicity: int) -> int:
    """How many examples (each with all its K draws; one example is never split) one chunk of the step holds."""
    if chunking == ROWS:
        return max(1, physical_batch_size // noise_multiplicity)
    if chunking == EXAMPLES:
        return physical_batch_size
    raise ValueError(f"chunking must be one of {CHUNKINGS}, got '{chunking}'")


def resolve_implementation(setting: str, model: nn.Module, loss) -> str:
    """The implementation for `setting`: "auto" is the first of AUTO_ORDER that supports the model and loss; a
    named one must support them (a declared choice is never replaced silently)."""
    if setting == AUTO:
        return next(name for name in AUTO_ORDER if supports(name, model, loss))
    if setting not in IMPLEMENTATIONS:
        raise ValueError(f"per_example must be one of {CHOICES}, got '{setting}'")
    if not supports(setting, model, loss):
        raise ValueError(f"the '{setting}' per-example implementation cannot handle this model or loss (it needs "
                         f"a loss with a batched form and layers with a per-example rule); use 'vmap' or 'auto'")
    return setting
