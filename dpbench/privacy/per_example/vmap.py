"""torch.func's per-example gradients: vmap(grad(loss)) over the per-example loss, then a clipped sum."""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from dpbench.privacy.per_example.base import ClippedSum, clip_and_sum


class VmapGradients:
    """Any model and per-example loss; K draws are averaged inside the per-example loss itself."""

    name = "vmap"

    def __init__(self, model: nn.Module, loss) -> None:
        self.trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
        buffers = dict(model.named_buffers())

        def example_loss(params: dict[str, torch.Tensor], example: dict[str, torch.Tensor]) -> torch.Tensor:
            def model_fn(*inputs: torch.Tensor) -> torch.Tensor:
                return functional_call(model, ({**frozen, **params}, buffers), inputs)
            return loss(model_fn, example)

        self._per_example_grads = vmap(grad(example_loss), in_dims=(None, 0))

    def per_example_grads(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        params = {n: p.detach() for n, p in self.trainable.items()}
        return self._per_example_grads(params, batch)

    def clipped_sum(self, batch: dict[str, torch.Tensor], max_grad_norm: float | None) -> ClippedSum:
        return clip_and_sum(self.per_example_grads(batch), max_grad_norm)
