"""DP-SGD training of the pair's downstream classifier directly on the private split (the baseline every
generator method is compared against), through the core's engine."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dpbench.data.types import ImageSet
from dpbench.models.classifiers import predict
from dpbench.models.diffusion import to_model_range
from dpbench.privacy.engine import DPConfig, DPSGDEngine
from dpbench.privacy.ledger import PrivacyLedger


def classifier_example_loss(model_fn, example: dict[str, torch.Tensor]) -> torch.Tensor:
    logits = model_fn(example["x"].unsqueeze(0))
    return F.cross_entropy(logits, example["y"].unsqueeze(0))


def train_classifier_dp(model: nn.Module, private: ImageSet, dp: DPConfig, *, lr: float, device: torch.device,
                        seed: int, progress=None) -> PrivacyLedger:
    """DP-SGD (momentum 0.9, as De et al. 2022) on every parameter of `model`; returns the spent ledger."""
    model.to(device).train()
    for p in model.parameters():
        p.requires_grad_(True)
    engine = DPSGDEngine(model, classifier_example_loss, dp, len(private), device, seed)
    optimizer = torch.optim.SGD(list(engine.trainable.values()), lr=lr, momentum=0.9)
    x_all, y_all = to_model_range(private.images).to(device), private.labels.to(device)

    def make_batch(indices: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        indices = indices.to(device)
        return {"x": x_all[indices], "y": y_all[indices]}

    ledger = engine.run(make_batch, optimizer, progress, description="DP-SGD classifier (private)")
    model.eval()
    return ledger


class TrainedClassifier:
    """The artifact of a classifier method: uint8 images in, labels out."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model, self.device = model.eval(), device

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return predict(self.model, images, self.device)
