"""Which per-example gradient implementation a DP engine uses: per scope, from a measured table, or as set.

The table is the fastest correct implementation per scope in
`python benchmarks/dp_step.py --k 1 4 --json` (CPU, batch 64, the default preset's models; benchmarks/RESULTS.md,
"DP step by implementation (issue 12)"). It is part of every run's config hash (dpbench.run.runner.run_config),
so a resumed run uses the implementation it started with, and the one used is recorded in each ledger stage.
"""
from __future__ import annotations

from torch import nn

from dpbench.models.unet import ClassConditionalUNet
from dpbench.privacy.per_example import IMPLEMENTATIONS, supports

AUTO = "auto"
CHOICES = (AUTO, *IMPLEMENTATIONS)

# scope -> implementation; see the module docstring for the benchmark behind it. DP step time over the
# non-private step (median of 5 alternated repeats, batch 64), vmap / hooks / ghost:
#   K = 1: loda 1.62 / 1.62 / 1.48, full 1.64 / 1.89 / 1.45, attention 1.73 / 1.44 / 1.25, lora 1.71 / 1.22 / 1.22,
#          classifier 2.72 / 7.85 / 1.58;
#   K = 4: loda 1.65 / 1.38 / 1.29, full 1.33 / 1.48 / 1.28, attention 2.07 / 1.66 / 1.70, lora 2.22 / 1.89 / 1.72.
# With per-example conv weight gradients by placement and bmm below 8 output channels (2026-12-01, ghost only):
#   K = 1: loda 1.22, full 1.42, classifier 1.61; K = 4: loda 1.15, full 1.37.
# With 1x1 fast paths on the ghost-norm path too, every scope in one run (ghost): K = 1: loda 1.25, full 1.33,
#   attention 1.19, lora 1.14, classifier 1.67; K = 4: loda 1.21, full 1.24, attention 1.09, lora 1.10.
# Ghost is fastest, or within the noise of the fastest (lora K = 1, attention K = 4: hooks), for every scope and K,
# with the lowest peak memory, so it is every scope's choice; vmap stays for models or losses it cannot handle.
TABLE = {"full": "ghost", "attention": "ghost", "lora": "ghost", "loda": "ghost", "classifier": "ghost"}

ROWS, EXAMPLES = "rows", "examples"
# scope -> what a chunk of the DP step holds at K > 1 (at K = 1 both are physical_batch_size examples):
#   ROWS: physical_batch_size // K examples (at least 1), the rows of a K = 1 chunk, so peak memory is flat in K;
#   EXAMPLES: physical_batch_size examples with all K draws of each (K times the rows), as the non-private step runs.
# From `python benchmarks/dp_step.py --k 1 4 --impl ghost` (benchmarks/RESULTS.md, "K = 4 with whole-example
# chunks"), DP step time over the non-private step at K = 4, ROWS / EXAMPLES: loda 1.29 / 1.49, full 1.28 / 1.37,
# attention 1.70 / 1.48, lora 1.72 / 1.19. The pixel U-Net's scopes lose nothing to the smaller chunks and keep
# their memory flat (peak RSS 0.67x / 0.79x the non-private K = 4 step, against 1.22x / 1.25x); the small latent
# U-Net pays each chunk's fixed per-layer cost, and its memory is flat either way (1.01x, 1.05x). With this table, one
# run ("Chunks per scope"): K = 4 loda 1.14 / 0.69x RSS, full 1.32 / 0.74x, attention 1.17 / 1.02x, lora 1.19 / 1.05x.
CHUNKING = {"full": ROWS, "loda": ROWS, "classifier": ROWS, "attention": EXAMPLES, "lora": EXAMPLES}


def examples_per_chunk(chunking: str, physical_batch_size: int, noise_multiplicity: int) -> int:
    """How many examples (each with all its K draws; one example is never split) one chunk of the step holds."""
    if chunking == ROWS:
        return max(1, physical_batch_size // noise_multiplicity)
    if chunking == EXAMPLES:
        return physical_batch_size
    raise ValueError(f"chunking must be '{ROWS}' or '{EXAMPLES}', got '{chunking}'")


def scope_of(model: nn.Module) -> str:
    """The scope the trainable parameter set is: adapters by their parameter names, "full" for a diffusion
    U-Net trained whole, "classifier" for any other model trained whole, "attention" for any other part."""
    params = dict(model.named_parameters())
    trainable = [name for name, p in params.items() if p.requires_grad]
    for adapter in ("loda", "lora"):
        if trainable and all(f"{adapter}_" in name for name in trainable):
            return adapter
    if len(trainable) == len(params):
        return "full" if isinstance(model, ClassConditionalUNet) else "classifier"
    return "attention"


def resolve_implementation(setting: str, model: nn.Module, loss) -> str:
    """The implementation for `setting` ("auto": the table's for the model's scope, or "vmap" where the table's
    cannot handle this model or loss; otherwise the named one, which must support them)."""
    if setting == AUTO:
        chosen = TABLE[scope_of(model)]
        return chosen if supports(chosen, model, loss) else "vmap"
    if setting not in IMPLEMENTATIONS:
        raise ValueError(f"per_example must be one of {CHOICES}, got '{setting}'")
    if not supports(setting, model, loss):
        raise ValueError(f"the '{setting}' per-example implementation cannot handle this model or loss (it needs "
                         f"a loss with a batched form and layers with a per-example rule); use 'vmap'")
    return setting
