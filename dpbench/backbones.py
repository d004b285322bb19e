"""Backbones the methods build on, pre-trained on public data only and cached.

Pre-training settings belong to the core, not to a method, so every method, epsilon and seed that uses
the same backbone reuses one cache entry.
"""
from __future__ import annotations

from dataclasses import replace

from dpbench.interface import RunContext
from dpbench.models.pretrain import PretrainConfig, pretrained_unet
from dpbench.models.unet import ClassConditionalUNet, UNetConfig

PRETRAIN_PRESETS = {
    "smoke": PretrainConfig(steps=30, batch_size=32, lr=2e-3),
    "default": PretrainConfig(steps=1500, batch_size=64, lr=2e-3),
    "paper": PretrainConfig(steps=20000, batch_size=128, lr=2e-4),
}
PRETRAIN_SEED = 0  # one public backbone per pair and config, shared by every run seed


def pixel_unet_config(ctx: RunContext, **overrides) -> UNetConfig:
    smoke = ctx.preset == "smoke"
    low_res = (ctx.pair.image_size + 3) // 4  # attention at the lowest resolution (7x7 for 28x28)
    base = UNetConfig(image_size=ctx.pair.image_size, channels=ctx.pair.channels, num_classes=ctx.pair.num_classes,
                      base_channels=16 if smoke else 32, channel_mults=(1, 2, 2), attention_resolutions=(low_res,))
    return replace(base, **overrides)


def public_pixel_unet(ctx: RunContext, config: UNetConfig) -> ClassConditionalUNet:
    """The public-pretrained pixel U-Net. It is handed the public split only: it cannot see private data."""
    with ctx.stage("pretrain"):
        return pretrained_unet(ctx.data.public_train, config, PRETRAIN_PRESETS[ctx.preset], pair_name=ctx.pair.name,
                               seed=PRETRAIN_SEED, cache_dir=ctx.cache_dir, device=ctx.device, progress=ctx.progress)
