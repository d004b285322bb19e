"""A per-example loss's batched form: the per-example losses of a whole batch in one ordinary forward, which the
layer-wise implementations (hooks, ghost) need; torch.func's vmap needs only the per-example loss.

batched(model, batch) -> (B,) losses, where batch holds B examples and example b's loss is exactly the
per-example loss of example b. Inside the model, every layer must see the examples' rows example-major: row r
belongs to example r // K for some K >= 1 (K draws of one example are K consecutive rows). The equality of
both forms is checked by tests/test_per_example.py for the harness's own losses.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

BatchedLoss = Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]


def with_batched_form(batched: BatchedLoss):
    """Decorator: attach `batched` to a per-example loss as its batched form."""

    def attach(loss):
        loss.batched_form = batched
        return loss

    return attach


def batched_form(loss) -> BatchedLoss | None:
    return getattr(loss, "batched_form", None)
