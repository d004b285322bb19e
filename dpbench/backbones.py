"""Backbones the methods build on, pre-trained on public data only and cached.

Pre-training settings belong to the core, not to a method, so every method, epsilon and seed that uses
the same backbone reuses one cache entry.
- pixel: a class-conditional U-Net on the pair's images.
- latent: an autoencoder (f=4) trained on the public images, and a class-conditional U-Net on its latents
  (latent diffusion, Rombach et al. 2022). Neither ever sees private data.
"""
from __future__ import annotations

from dataclasses import dataclass

from dpbench.interface import RunContext
from dpbench.models.autoencoder import AutoencoderConfig, AutoencoderTraining, LatentCodec, public_autoencoder
from dpbench.models.pretrain import PretrainConfig, PublicStream, pretrained_unet
from dpbench.models.unet import ClassConditionalUNet, UNetConfig

BACKBONES = ("pixel", "latent")
PRETRAIN_PRESETS = {
    "smoke": PretrainConfig(steps=30, batch_size=32),
    "default": PretrainConfig(steps=1000, batch_size=64),  # ~3 min on 2 CPU cores at width 16
    "paper": PretrainConfig(steps=20000, batch_size=128),
}
AUTOENCODER_PRESETS = {
    "smoke": AutoencoderTraining(steps=20, batch_size=32),
    "default": AutoencoderTraining(steps=600, batch_size=64),
    "paper": AutoencoderTraining(steps=20000, batch_size=128),
}
PIXEL_WIDTH = {"smoke": 8, "default": 16, "paper": 64}  # 16: ~0.18 s per batch-64 step on 2 CPU cores
LATENT_WIDTH = {"smoke": 16, "default": 32, "paper": 128}  # latents are 16x smaller than pixels: wider is cheap
PRETRAIN_SEED = 0  # one public backbone per pair and config, shared by every run seed


@dataclass
class Backbone:
    """A public-pretrained noise predictor, and the codec when it works on latents (None for pixels)."""

    unet: ClassConditionalUNet
    codec: LatentCodec | None
    sample_shape: tuple[int, int, int]


def pixel_unet_config(ctx: RunContext, **overrides) -> UNetConfig:
    return UNetConfig.for_images(ctx.pair.image_size, ctx.pair.channels, ctx.pair.num_classes,
                                 base_channels=PIXEL_WIDTH[ctx.preset], **overrides)


def latent_unet_config(ctx: RunContext, ae: AutoencoderConfig) -> UNetConfig:
    size = ae.latent_size()
    coarsest = (size + 1) // 2
    # attention at both latent levels (and the middle), so DP-LDM has a range of attention layers to choose from
    return UNetConfig(size, ae.latent_channels, ctx.pair.num_classes, base_channels=LATENT_WIDTH[ctx.preset],
                      channel_mults=(1, 2), attention_resolutions=(size, coarsest))


def public_stream(ctx: RunContext) -> PublicStream | None:
    """The pair's large unconditional public set, when it has one (ImageNet32 pairs): pre-training then runs in
    two phases, or unconditionally only when the public labels are not the pair's classes (CelebA)."""
    chunks = ctx.data.info.get("public_unconditional")
    if chunks is None:
        return None
    return PublicStream(name=f"{ctx.pair.name}-public", chunks=chunks,
                        conditional_after=ctx.data.info.get("public_pretraining") != ["unconditional"])


def public_pixel_unet(ctx: RunContext, config: UNetConfig) -> ClassConditionalUNet:
    """The public-pretrained pixel U-Net. It is handed the public split only: it cannot see private data."""
    with ctx.stage("pretrain"):
        return pretrained_unet(ctx.data.public_train, config, PRETRAIN_PRESETS[ctx.preset], pair_name=ctx.pair.name,
                               seed=PRETRAIN_SEED, cache_dir=ctx.cache_dir, device=ctx.device, progress=ctx.progress,
                               stream=public_stream(ctx))


def public_backbone(ctx: RunContext, kind: str) -> Backbone:
    if kind == "pixel":
        unet = public_pixel_unet(ctx, pixel_unet_config(ctx))
        return Backbone(unet, None, (ctx.pair.channels, ctx.pair.image_size, ctx.pair.image_size))
    if kind == "latent":
        ae = AutoencoderConfig(ctx.pair.image_size, ctx.pair.channels)
        with ctx.stage("pretrain"):
            codec = public_autoencoder(ctx.data.public_train, ae, AUTOENCODER_PRESETS[ctx.preset],
                                       pair_name=ctx.pair.name, seed=PRETRAIN_SEED, cache_dir=ctx.cache_dir,
                                       device=ctx.device, progress=ctx.progress)
            unet = pretrained_unet(ctx.data.public_train, latent_unet_config(ctx, ae), PRETRAIN_PRESETS[ctx.preset],
                                   pair_name=ctx.pair.name, seed=PRETRAIN_SEED, cache_dir=ctx.cache_dir,
                                   device=ctx.device, progress=ctx.progress, encoder=codec, stream=public_stream(ctx))
        size = ae.latent_size()
        return Backbone(unet, codec, (ae.latent_channels, size, size))
    raise ValueError(f"unknown backbone '{kind}', expected one of {BACKBONES}")
