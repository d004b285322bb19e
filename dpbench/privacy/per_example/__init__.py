"""Per-example gradient implementations of the DP engine: each turns one physical batch into the sum of its
per-example gradients, each clipped to norm <= C (the plain sum when not private), with non-finite examples
contributing nothing and counted.

- "vmap": torch.func's vmap(grad(loss)) over the per-example loss; supports any model and loss.
- "hooks": per-layer per-example gradients from captured activations and output gradients (Opacus's grad
  samplers), i.e. what Opacus's hooks compute; needs a loss with a batched form (per_example.batched).
- "ghost": mixed ghost clipping with book-keeping: per-example norms without per-example gradients where that is
  cheaper (Goodfellow 2015; Li et al. 2022; Bu et al. 2022, mixed ghost clipping), and the clipped sum straight
  from the same activations and output gradients, with no second backward (Bu et al. 2023, book-keeping).

Every implementation averages a loss's K draws inside its example before clipping: one example's clipped
contribution is <= C whatever K is.
"""
from __future__ import annotations

from dpbench.privacy.per_example.base import ClippedSum, PerExampleGradients
from dpbench.privacy.per_example.batched import batched_form, with_batched_form
from dpbench.privacy.per_example.layers import LayerwiseGradients, unsupported_parameters
from dpbench.privacy.per_example.vmap import VmapGradients

IMPLEMENTATIONS = ("vmap", "hooks", "ghost")


def supports(name: str, model, loss) -> bool:
    """Whether implementation `name` can compute this model's and loss's per-example gradients."""
    if name == "vmap":
        return True
    return batched_form(loss) is not None and not unsupported_parameters(model)


def build(name: str, model, loss) -> PerExampleGradients:
    """Implementation `name` over the model's trainable parameters (those with requires_grad)."""
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"per-example implementation must be one of {IMPLEMENTATIONS}, got '{name}'")
    if name == "vmap":
        return VmapGradients(model, loss)
    if batched_form(loss) is None:
        raise ValueError(f"the '{name}' per-example implementation needs a loss with a batched form "
                         f"(dpbench.privacy.per_example.with_batched_form); this one has none")
    unsupported = unsupported_parameters(model)
    if unsupported:
        raise ValueError(f"the '{name}' per-example implementation has no per-layer rule for the trainable "
                         f"parameters {unsupported[:5]}; use 'vmap'")
    return LayerwiseGradients(model, batched_form(loss), ghost=(name == "ghost"))


__all__ = ["IMPLEMENTATIONS", "ClippedSum", "PerExampleGradients", "build", "supports", "batched_form",
           "with_batched_form"]
