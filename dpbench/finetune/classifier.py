"""DP-SGD training of a classifier directly on the private split (the baseline every generator method is
compared against), through the harness's DP engine."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dpbench.api.context import MethodContext
from dpbench.models.classifiers import predict
from dpbench.models.diffusion import to_model_range
from dpbench.privacy.engine import DPSettings
from dpbench.privacy.per_example import with_batched_form


def classifier_batch_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(model(batch["x"]), batch["y"], reduction="none")


@with_batched_form(classifier_batch_loss)
def classifier_example_loss(model_fn, example: dict[str, torch.Tensor]) -> torch.Tensor:
    logits = model_fn(example["x"].unsqueeze(0))
    return F.cross_entropy(logits, example["y"].unsqueeze(0))


def pass_through(examples: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    return examples


def train_classifier_dp(ctx: MethodContext, model: nn.Module, dp: DPSettings, *, lr: float) -> None:
    """DP-SGD (momentum 0.9, as De et al. 2022) on every parameter of `model`."""
    model.to(ctx.device).train()
    for p in model.parameters():
        p.requires_grad_(True)
    trainer = ctx.private_trainer(model, classifier_example_loss, pass_through, dp, prepare=to_model_range)
    optimizer = torch.optim.SGD(list(trainer.trainable.values()), lr=lr, momentum=0.9)
    trainer.run(optimizer, ctx.progress, description="DP-SGD classifier (private)")
    model.eval()


class TrainedClassifier:
    """The artifact of a classifier method: uint8 images in, labels out."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model, self.device = model.eval(), device

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return predict(self.model, images, self.device)
