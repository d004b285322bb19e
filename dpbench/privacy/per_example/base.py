"""What every per-example gradient implementation returns, and the clipping arithmetic they share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class ClippedSum:
    """One physical batch's sum of clipped per-example gradients (plain gradients when not private).

    `norms` are the per-example norms before clipping (0 for a non-finite example); `nonfinite` marks the
    examples that contributed nothing because their gradient had a NaN or inf."""

    summed: dict[str, torch.Tensor]
    norms: torch.Tensor
    nonfinite: torch.Tensor


class PerExampleGradients(Protocol):
    name: str

    def clipped_sum(self, batch: dict[str, torch.Tensor], max_grad_norm: float | None) -> ClippedSum:
        """Sum over the batch of each example's gradient clipped to norm <= max_grad_norm (None: not clipped)."""
        ...


def clip_factors(norms: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    """The factor that scales each example's gradient to norm <= C (1 for a gradient already inside)."""
    return (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)


def example_weights(norms_sq: torch.Tensor, max_grad_norm: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From per-example squared norms: (weights, norms, non-finite mask). A non-finite norm (a NaN or inf in the
    gradient, or one so large its square overflows) gets weight 0 and reports norm 0: it contributes nothing,
    so the sum stays bounded whatever one record holds."""
    bad = ~torch.isfinite(norms_sq)
    norms = torch.where(bad, torch.zeros_like(norms_sq), norms_sq).clamp(min=0).sqrt()
    weights = clip_factors(norms, max_grad_norm) if max_grad_norm is not None else torch.ones_like(norms)
    return torch.where(bad, torch.zeros_like(weights), weights), norms, bad


def zero_rows(t: torch.Tensor, bad: torch.Tensor | None) -> torch.Tensor:
    """`t` with the rows of the examples `bad` zeroed (rows of `t` may be K per example, example-major). A weight
    of 0 alone is not enough: 0 * inf = NaN would poison the sum. `bad` None: no example is bad, `t` as it is."""
    if bad is None:
        return t
    rows = bad.repeat_interleave(t.shape[0] // bad.shape[0])
    return torch.where(rows.view(-1, *([1] * (t.dim() - 1))), torch.zeros_like(t), t)


def squared_norms(per_example: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each example's squared norm over all its tensors, tensor by tensor (no concatenation of the gradients)."""
    total = None
    for g in per_example.values():
        part = torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1).square()
        total = part if total is None else total + part
    return total


def clip_and_sum(per_example: dict[str, torch.Tensor], max_grad_norm: float | None) -> ClippedSum:
    """Clip each example's whole gradient (all tensors together) to norm <= C and sum over the batch. An example
    whose squared norm is not finite (a NaN or inf entry, or an overflow past ~1.8e19 in float32) contributes
    nothing and is marked: it is never scaled by a factor computed from a wrong norm."""
    norms_sq = squared_norms(per_example)
    weights, norms, bad = example_weights(norms_sq, max_grad_norm)
    if bad.any():
        per_example = {name: zero_rows(g, bad) for name, g in per_example.items()}
    summed = {name: (weights @ g.reshape(g.shape[0], -1)).view(g.shape[1:]) for name, g in per_example.items()}
    return ClippedSum(summed, norms, bad)
