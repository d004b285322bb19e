"""Backbones the methods build on, pre-trained on public data only and cached.

Pre-training settings belong to the core, not to a method, so every method, epsilon and seed that uses
the same backbone reuses one cache entry.
"""
from __future__ import annotations

from dpbench.interface import RunContext
from dpbench.models.pretrain import PretrainConfig, pretrained_unet
from dpbench.models.unet import ClassConditionalUNet, UNetConfig

PRETRAIN_PRESETS = {
    "smoke": PretrainConfig(steps=30, batch_size=32),
    "default": PretrainConfig(steps=1000, batch_size=64),  # ~3 min on 2 CPU cores at width 16
    "paper": PretrainConfig(steps=20000, batch_size=128),
}
PRETRAIN_SEED = 0  # one public backbone per pair and config, shared by every run seed


def pixel_unet_config(ctx: RunContext, **overrides) -> UNetConfig:
    width = {"smoke": 8, "default": 16, "paper": 64}[ctx.preset]  # 16: ~0.18 s per batch-64 step on 2 CPU cores
    return UNetConfig.for_images(ctx.pair.image_size, ctx.pair.channels, ctx.pair.num_classes,
                                 base_channels=width, **overrides)


def public_pixel_unet(ctx: RunContext, config: UNetConfig) -> ClassConditionalUNet:
    """The public-pretrained pixel U-Net. It is handed the public split only: it cannot see private data."""
    with ctx.stage("pretrain"):
        return pretrained_unet(ctx.data.public_train, config, PRETRAIN_PRESETS[ctx.preset], pair_name=ctx.pair.name,
                               seed=PRETRAIN_SEED, cache_dir=ctx.cache_dir, device=ctx.device, progress=ctx.progress)
