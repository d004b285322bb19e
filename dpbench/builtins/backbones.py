"""The built-in backbones, pre-trained on public data only and cached.

Pre-training settings belong to the backbone, not to a method, so every method, ε and seed that uses the same
backbone reuses one cache entry.
- pixel: a class-conditional U-Net on the pair's images.
- latent: an autoencoder (f=4) trained on the public images, and a class-conditional U-Net on its latents
  (latent diffusion, Rombach et al. 2022). Neither ever sees private data.
"""
import dpbench
from dpbench.models.autoencoder import AutoencoderConfig
from dpbench.models.unet import UNetConfig
from dpbench.pretrain.autoencoder import AutoencoderTraining, public_autoencoder
from dpbench.pretrain.unet import PretrainConfig, PublicStream, pretrained_unet

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


def public_stream(ctx) -> PublicStream | None:
    """The pair's large unconditional public set, when it has one (ImageNet32 pairs): pre-training then runs in
    two phases, or unconditionally only when the public labels are not the pair's classes (CelebA)."""
    chunks = ctx.public_info.get("public_unconditional")
    if chunks is None:
        return None
    return PublicStream(name=f"{ctx.pair.name}-public", chunks=chunks,
                        conditional_after=ctx.public_info.get("public_pretraining") != ["unconditional"])


class PixelBackbone(dpbench.BackboneBuilder):
    name = "pixel"
    description = "class-conditional U-Net on the pair's pixels, pre-trained on the public split"

    def build(self, ctx):
        config = UNetConfig.for_images(ctx.pair.image_size, ctx.pair.channels, ctx.pair.num_classes,
                                       base_channels=PIXEL_WIDTH[ctx.preset])
        with ctx.stage("pretrain"):
            unet = pretrained_unet(ctx.public, config, PRETRAIN_PRESETS[ctx.preset], pair_name=ctx.pair.name,
                                   seed=PRETRAIN_SEED, cache_dir=ctx.cache_dir, device=ctx.device,
                                   progress=ctx.progress, stream=public_stream(ctx))
        return dpbench.Backbone(unet, None, (ctx.pair.channels, ctx.pair.image_size, ctx.pair.image_size))


class LatentBackbone(dpbench.BackboneBuilder):
    name = "latent"
    description = "f=4 autoencoder + class-conditional latent U-Net, both pre-trained on the public split"

    def build(self, ctx):
        ae = AutoencoderConfig(ctx.pair.image_size, ctx.pair.channels)
        size = ae.latent_size()
        coarsest = (size + 1) // 2
        # attention at both latent levels (and the middle), so DP-LDM has a range of attention layers to choose from
        config = UNetConfig(size, ae.latent_channels, ctx.pair.num_classes, base_channels=LATENT_WIDTH[ctx.preset],
                            channel_mults=(1, 2), attention_resolutions=(size, coarsest))
        with ctx.stage("pretrain"):
            codec = public_autoencoder(ctx.public, ae, AUTOENCODER_PRESETS[ctx.preset], pair_name=ctx.pair.name,
                                       seed=PRETRAIN_SEED, cache_dir=ctx.cache_dir, device=ctx.device,
                                       progress=ctx.progress)
            unet = pretrained_unet(ctx.public, config, PRETRAIN_PRESETS[ctx.preset], pair_name=ctx.pair.name,
                                   seed=PRETRAIN_SEED, cache_dir=ctx.cache_dir, device=ctx.device,
                                   progress=ctx.progress, encoder=codec, stream=public_stream(ctx))
        return dpbench.Backbone(unet, codec, (ae.latent_channels, size, size))


@dpbench.hookimpl
def dpbench_register_backbones(register):
    register(PixelBackbone())
    register(LatentBackbone())
