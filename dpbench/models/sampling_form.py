"""The form of a fine-tuned model that sampling runs: adapters swapped for their inference equivalents.

Training keeps adapters as separate plain layers (the DP engine takes per-example gradients of them); sampling
needs none of that, so any module with a `for_sampling()` method (LoRA: merged into the base weight; LoDA: base
and A stacked into one conv) is replaced in a copy of the model. The trained model itself is left as it is.
"""
from __future__ import annotations

import copy

from torch import nn


def for_sampling(model: nn.Module) -> nn.Module:
    """A frozen eval-mode copy of `model` in which every module that offers `for_sampling()` is swapped for it."""
    swapped = copy.deepcopy(model).eval().requires_grad_(False)
    targets = [name for name, module in swapped.named_modules() if name and hasattr(module, "for_sampling")]
    for name in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = swapped.get_submodule(parent_name) if parent_name else swapped
        setattr(parent, attr, getattr(parent, attr).for_sampling())
    return swapped
