"""Noise-like samples: images whose background still carries sampling noise.

Real digits (MNIST and the public digits alike) sit on a flat black background: the standard deviation of the
darker half of their pixels is 0. A sample that still carries sampling noise has a grainy background. A sample
counts as noise-like when that background standard deviation, on [0, 1] pixels, exceeds `NOISE_THRESHOLD`
(0.05, about 13 grey levels): well above any real image, and met by every noise-dominated sample of the 0.1
default grid.
"""
from __future__ import annotations

import torch

NOISE_THRESHOLD = 0.05


def background_noise(images: torch.Tensor) -> torch.Tensor:
    """Per-image standard deviation of the darker half of the pixels, images uint8 (N, C, H, W); float (N,)."""
    x = images.float().flatten(1) / 255.0
    darker_half = x.sort(dim=1).values[:, : x.shape[1] // 2]
    return darker_half.std(dim=1)


def noise_like_mask(samples: torch.Tensor, threshold: float = NOISE_THRESHOLD) -> torch.Tensor:
    """Bool (N,): which samples are noise-like."""
    return background_noise(samples) > threshold
