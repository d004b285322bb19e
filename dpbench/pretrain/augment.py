"""Augmentation of public images for pre-training: small affine moves and stroke-width changes.

Public compute costs no privacy, so a small public set (e.g. 1,797 digits) can be stretched by showing the model
plausible variants. Flips are left out: they change what a digit is.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    rotate_degrees: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    translate_fraction: float = 0.07  # of the image side: 2 pixels at 28x28
    thicken_probability: float = 0.25  # 3x3 grey dilation
    thin_probability: float = 0.15  # 3x3 grey erosion
    # The public digits are 8x8 scans blown up to 20x20: soft blobs. A steep contrast curve around a random grey
    # level turns them into crisp strokes of varying width, closer to scanned handwriting.
    sharpen_probability: float = 0.7
    sharpen_level_range: tuple[float, float] = (0.3, 0.6)
    sharpen_gain: float = 12.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scale_range"] = list(self.scale_range)
        d["sharpen_level_range"] = list(self.sharpen_level_range)
        return d


def augment(x: torch.Tensor, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """Augment a batch of images in model range [-1, 1] (background -1), (B, C, H, W) -> same shape."""
    b = x.shape[0]
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(aug.rotate_degrees)
    low, high = aug.scale_range
    scale = low + torch.rand(b, generator=generator) * (high - low)
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * aug.translate_fraction * 2  # grid units span 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    moved = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
    stroke = torch.rand(b, generator=generator)
    thick = F.max_pool2d(moved, 3, stride=1, padding=1)
    thin = -F.max_pool2d(-moved, 3, stride=1, padding=1)
    choose = lambda mask: mask.view(b, 1, 1, 1).to(x.dtype)  # noqa: E731
    thicken = choose(stroke < aug.thicken_probability)
    thinner = choose((stroke >= aug.thicken_probability) & (stroke < aug.thicken_probability + aug.thin_probability))
    out = thicken * thick + thinner * thin + (1 - thicken - thinner) * moved
    return _sharpen(out, aug, generator)


def _sharpen(x: torch.Tensor, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """A rescaled sigmoid contrast curve (0 stays 0, 1 stays 1 in [0, 1] pixels), per image with a probability."""
    b = x.shape[0]
    low, high = aug.sharpen_level_range
    level = (low + torch.rand(b, generator=generator) * (high - low)).view(b, 1, 1, 1)
    apply = (torch.rand(b, generator=generator) < aug.sharpen_probability).view(b, 1, 1, 1).to(x.dtype)
    unit = (x + 1) / 2
    curve = lambda v: torch.sigmoid(aug.sharpen_gain * (v - level))  # noqa: E731
    sharp = (curve(unit) - curve(torch.zeros_like(unit))) / (curve(torch.ones_like(unit)) - curve(torch.zeros_like(unit)))
    return (apply * sharp + (1 - apply) * unit) * 2 - 1
