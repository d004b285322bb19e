"""Downstream classifiers (no BatchNorm, so the same models also train under DP-SGD) and plain training."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dpbench.models.diffusion import to_model_range


class SmallCNN(nn.Module):
    """Two conv + max-pool stages and a two-layer head, for MNIST-like inputs."""

    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.GroupNorm(8, width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.GroupNorm(8, 2 * width), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * side * side, 128), nn.ReLU(), nn.Linear(128, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _conv_gn(in_ch: int, out_ch: int, pool: bool = False) -> nn.Sequential:
    # GroupNorm with 16 groups replaces BatchNorm, as in De et al. 2022 ("Unlocking high-accuracy
    # differentially private image classification through scale").
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.GroupNorm(16, out_ch), nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class _Residual(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_gn(ch, ch), _conv_gn(ch, ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """The DAWNBench ResNet9 (widths 64-128-256-512) with GroupNorm, the usual DP-SGD CIFAR model."""

    def __init__(self, channels: int, num_classes: int, width: int = 64) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            _conv_gn(channels, w),
            _conv_gn(w, 2 * w, pool=True),
            _Residual(2 * w),
            _conv_gn(2 * w, 4 * w, pool=True),
            _conv_gn(4 * w, 8 * w, pool=True),
            _Residual(8 * w),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Linear(8 * w, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_classifier(family: str, channels: int, image_size: int, num_classes: int) -> nn.Module:
    if family == "cnn":
        return SmallCNN(channels, image_size, num_classes)
    if family == "resnet9":
        return ResNet9(channels, num_classes)
    raise ValueError(f"unknown classifier family {family!r}; expected 'cnn' or 'resnet9'")


def fit_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    device: torch.device | str,
    seed: int,
    progress=None,
) -> nn.Module:
    """Non-private training with Adam on uint8 images (N, C, H, W); returns the model in eval mode."""
    device = torch.device(device)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = images.shape[0]
    batches = (n + batch_size - 1) // batch_size
    task = progress.task("train classifier", total=epochs * batches) if progress is not None else None
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for b in range(batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            x = to_model_range(images[idx].to(device))
            loss = F.cross_entropy(model(x), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if task is not None:
                task.advance(1, loss=loss.item())
    if task is not None:
        task.close()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device: torch.device | str, batch_size: int = 512) -> torch.Tensor:
    """int64 predicted labels (N,) on CPU for uint8 images."""
    was_training = model.training
    model.eval()
    preds = [
        model(to_model_range(images[i:i + batch_size].to(device))).argmax(dim=1).cpu()
        for i in range(0, images.shape[0], batch_size)
    ]
    model.train(was_training)
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device | str) -> float:
    if images.shape[0] == 0:
        return float("nan")
    return (predict(model, images, device) == labels.cpu()).float().mean().item()
