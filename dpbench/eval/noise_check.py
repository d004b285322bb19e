"""Noise-like samples: images whose high-frequency energy is far above that of any real image.

High-frequency energy is the mean squared difference between an image and its 3x3 box blur, on [0, 1]
pixels. Real digits have sharp strokes on a flat background; a sample that still carries sampling noise has
energy everywhere. A sample counts as noise-like when its energy exceeds `factor` times the real images'
99th percentile.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

NOISE_FACTOR = 1.5


def high_frequency_energy(images: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared (image - 3x3 box blur), images uint8 (N, C, H, W); float (N,)."""
    x = images.float() / 255.0
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return (x - blurred).square().flatten(1).mean(dim=1)


def noise_like_mask(samples: torch.Tensor, real: torch.Tensor, factor: float = NOISE_FACTOR) -> torch.Tensor:
    """Bool (N,): which samples are noise-like against the `real` images' high-frequency energy."""
    threshold = factor * torch.quantile(high_frequency_energy(real), 0.99)
    return high_frequency_energy(samples) > threshold
