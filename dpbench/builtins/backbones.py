"""The built-in backbones, pre-trained on public data only and cached.

Pre-training settings belong to the backbone, not to a method, so every method, ε and seed that uses the same
backbone reuses one cache entry.
- pixel: a class-conditional U-Net on the pair's images.
- latent: an autoencoder (f=4) trained on the public images, and a class-conditional U-Net on its latents
  (latent diffusion, Rombach et al. 2022). Neither ever sees private data.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import dpbench
from dpbench.storage import tensor_digest

# The builders' code (torch, pre-training) loads when a backbone is first used, not when the plugin registers:
# `dpbench list` stays fast. The recipe tables below are built on first use too (module __getattr__).


@functools.lru_cache(maxsize=1)
def _recipe_tables() -> dict:
    from dpbench.pretrain.augment import Augmentation
    from dpbench.pretrain.autoencoder_pretraining import AutoencoderTraining
    from dpbench.pretrain.pixel_pretraining import PretrainConfig

    return {"PRETRAIN_PRESETS": {
        "smoke": PretrainConfig(steps=30, batch_size=32),
        # 6,000 steps with augmentation: ~13 min on 2 CPU cores at width 16, paid once by `dpbench pretrain` and
        # shipped with the package (the cache key covers this config, so the shipped file matches it exactly)
        "default": PretrainConfig(steps=6000, batch_size=64, augmentation=Augmentation()),
        "paper": PretrainConfig(steps=20000, batch_size=128, augmentation=Augmentation()),
    },
# The latent backbone gets the pixel backbone's augmentation (each augmented batch is encoded on the fly): version 1
# trained both parts on the raw 8x8-derived blobs only, 600 + 1,000 steps, and its public-only samples scored
# FID 184 against the pixel backbone's 97.
    "LATENT_PRETRAIN_PRESETS": {
        "smoke": PretrainConfig(steps=30, batch_size=32),
        "default": PretrainConfig(steps=5000, batch_size=64, augmentation=Augmentation()),
        "paper": PretrainConfig(steps=20000, batch_size=128, augmentation=Augmentation()),
    },
    "AUTOENCODER_PRESETS": {
        "smoke": AutoencoderTraining(steps=20, batch_size=32),
        "default": AutoencoderTraining(steps=3000, batch_size=64, augmentation=Augmentation()),
        "paper": AutoencoderTraining(steps=20000, batch_size=128, augmentation=Augmentation()),
    }}


def __getattr__(name: str):
    tables = _recipe_tables()
    if name in tables:
        return tables[name]
    raise AttributeError(f"module '{__name__}' has no attribute '{name}'")


def _table(name: str, preset: str):
    return _recipe_tables()[name][preset]


def _training(name: str, ctx):
    """The preset's training recipe `name`, its steps capped by the run's --max-steps (a capped recipe is a cache
    entry of its own, and never matches a shipped file)."""
    train = _table(name, ctx.preset)
    return dataclasses.replace(train, steps=ctx.max_steps) if _capped(train, ctx) else train


def _capped(train, ctx) -> bool:
    return ctx.max_steps is not None and train.steps > ctx.max_steps


def _shipped(ctx, *names: str) -> bool:
    """Whether shipped weights may be used: only for the preset's own recipes, never a capped one."""
    return not any(_capped(_table(name, ctx.preset), ctx) for name in names)


PIXEL_WIDTH = {"smoke": 8, "default": 16, "paper": 64}  # 16: ~0.18 s per batch-64 step on 2 CPU cores
LATENT_WIDTH = {"smoke": 16, "default": 32, "paper": 128}  # latents are 16x smaller than pixels: wider is cheap
PRETRAIN_SEED = 0  # one public backbone per pair and config, shared by every run seed
PIXEL_RECIPE_VERSION = 1  # bump whenever the pixel backbone's recipe changes (code, data handling, settings)
LATENT_RECIPE_VERSION = 2  # the same for the latent backbone (autoencoder and latent U-Net)
WEIGHTS_DIR = Path(__file__).with_name("weights")  # shipped public backbones, each with its recipe beside it


def public_stream(ctx) -> PublicStream | None:
    """The pair's large unconditional public set, when it has one (ImageNet32 pairs): pre-training then runs in
    two phases, or unconditionally only when the public labels are not the pair's classes (CelebA)."""
    from dpbench.pretrain.pixel_pretraining import PublicStream

    chunks = ctx.public_info.get("public_unconditional")
    if chunks is None:
        return None
    return PublicStream(name=f"{ctx.pair.name}-public", chunks=chunks,
                        conditional_after=ctx.public_info.get("public_pretraining") != ["unconditional"])


class PixelBackbone(dpbench.BackboneBuilder):
    name = "pixel"
    recipe_version = PIXEL_RECIPE_VERSION
    description = "class-conditional U-Net on the pair's pixels, pre-trained on the public split (shipped for some pairs)"

    def _config(self, ctx) -> UNetConfig:
        from dpbench.models.unet import UNetConfig

        return UNetConfig.for_images(ctx.pair.image_size, ctx.pair.channels, ctx.pair.num_classes,
                                     base_channels=PIXEL_WIDTH[ctx.preset])

    def recipe(self, ctx) -> dict:
        """Everything the shipped weights depend on; a shipped file is used only when this matches exactly."""
        config, train = self._config(ctx), _training("PRETRAIN_PRESETS", ctx)
        stream = public_stream(ctx)
        return {"recipe_version": self.recipe_version, "pair": ctx.pair.name, "preset": ctx.preset,
                "unet": config.to_dict(), "unet_key": config.key(), "train": train.to_dict(), "seed": PRETRAIN_SEED,
                "public_digest": tensor_digest(ctx.public.images, ctx.public.labels),
                "stream": stream.key() if stream else None}

    def _unet(self, ctx, shipped: bool):
        from dpbench.pretrain.pixel_pretraining import pretrained_unet
        from dpbench.pretrain.shipped import ShippedStore

        store = (ShippedStore(WEIGHTS_DIR, rebuild=ctx.rebuild_backbone), self.shipped_name(ctx), self.recipe(ctx),
                 f"run `dpbench pretrain --pair {ctx.pair.name} --preset {ctx.preset}` or pass --rebuild-backbone") \
            if shipped else None
        return pretrained_unet(ctx.public, self._config(ctx), _training("PRETRAIN_PRESETS", ctx), pair_name=ctx.pair.name,
                               seed=PRETRAIN_SEED, cache_dir=ctx.cache_dir, device=ctx.device, progress=ctx.progress,
                               stream=public_stream(ctx), shipped=store)

    def shipped_name(self, ctx) -> str:
        return f"{ctx.pair.name}-pixel-{ctx.preset}"

    def build(self, ctx):
        with ctx.stage("pretrain"):
            unet = self._unet(ctx, shipped=_shipped(ctx, "PRETRAIN_PRESETS"))
        return dpbench.Backbone(unet, None, (ctx.pair.channels, ctx.pair.image_size, ctx.pair.image_size))

    def export(self, ctx, directory):
        """Train (or take from the local cache) the backbone of the current recipe and write it for shipping."""
        from dpbench.pretrain.pixel_pretraining import cached_meta
        from dpbench.pretrain.shipped import ShippedStore

        with ctx.stage("pretrain"):
            unet = self._unet(ctx, shipped=False)
        meta = cached_meta(ctx.public, self._config(ctx), _training("PRETRAIN_PRESETS", ctx), pair_name=ctx.pair.name,
                           seed=PRETRAIN_SEED, cache_dir=ctx.cache_dir, stream=public_stream(ctx))
        extra = {"train_seconds": meta.get("train_seconds"), "command": f"dpbench pretrain --pair {ctx.pair.name} "
                 f"--backbone pixel --preset {ctx.preset}", "parameters": sum(p.numel() for p in unet.parameters())}
        return ShippedStore(directory).write(self.shipped_name(ctx), unet.state_dict(), self.recipe(ctx), extra)


class LatentBackbone(dpbench.BackboneBuilder):
    name = "latent"
    recipe_version = LATENT_RECIPE_VERSION
    description = "f=4 autoencoder + class-conditional latent U-Net, both pre-trained on the public split (shipped for some pairs)"

    def _configs(self, ctx) -> tuple[AutoencoderConfig, UNetConfig]:
        from dpbench.models.autoencoder import AutoencoderConfig
        from dpbench.models.unet import UNetConfig

        ae = AutoencoderConfig(ctx.pair.image_size, ctx.pair.channels)
        size = ae.latent_size()
        coarsest = (size + 1) // 2
        # attention at both latent levels (and the middle), so DP-LDM has a range of attention layers to choose from
        unet = UNetConfig(size, ae.latent_channels, ctx.pair.num_classes, base_channels=LATENT_WIDTH[ctx.preset],
                          channel_mults=(1, 2), attention_resolutions=(size, coarsest))
        return ae, unet

    def recipe(self, ctx) -> dict:
        """Everything both shipped files depend on; they are used only when this matches exactly."""
        ae, unet = self._configs(ctx)
        return {"recipe_version": self.recipe_version, "pair": ctx.pair.name, "preset": ctx.preset,
                "autoencoder": {"config": dataclasses.asdict(ae), "key": ae.key(),
                                "train": dataclasses.asdict(_training("AUTOENCODER_PRESETS", ctx))},
                "unet": unet.to_dict(), "unet_key": unet.key(), "train": _training("LATENT_PRETRAIN_PRESETS", ctx).to_dict(),
                "seed": PRETRAIN_SEED, "public_digest": tensor_digest(ctx.public.images, ctx.public.labels),
                "stream": public_stream(ctx).key() if public_stream(ctx) else None}

    def shipped_names(self, ctx) -> tuple[str, str]:
        base = f"{ctx.pair.name}-latent-{ctx.preset}"
        return f"{base}-autoencoder", f"{base}-unet"

    def _parts(self, ctx, shipped: bool):
        from dpbench.pretrain.autoencoder_pretraining import public_autoencoder
        from dpbench.pretrain.pixel_pretraining import pretrained_unet
        from dpbench.pretrain.shipped import ShippedStore

        ae, config = self._configs(ctx)
        store = ShippedStore(WEIGHTS_DIR, rebuild=ctx.rebuild_backbone) if shipped else None
        hint = f"run `dpbench pretrain --pair {ctx.pair.name} --backbone latent --preset {ctx.preset}` or pass " \
               "--rebuild-backbone"
        ae_name, unet_name = self.shipped_names(ctx)
        codec = public_autoencoder(ctx.public, ae, _training("AUTOENCODER_PRESETS", ctx), pair_name=ctx.pair.name,
                                   seed=PRETRAIN_SEED, cache_dir=ctx.cache_dir, device=ctx.device,
                                   progress=ctx.progress,
                                   shipped=(store, ae_name, self.recipe(ctx), hint) if store else None)
        unet = pretrained_unet(ctx.public, config, _training("LATENT_PRETRAIN_PRESETS", ctx), pair_name=ctx.pair.name,
                               seed=PRETRAIN_SEED, cache_dir=ctx.cache_dir, device=ctx.device,
                               progress=ctx.progress, encoder=codec, stream=public_stream(ctx),
                               shipped=(store, unet_name, self.recipe(ctx), hint) if store else None)
        return ae, config, codec, unet

    def build(self, ctx):
        with ctx.stage("pretrain"):
            ae, _, codec, unet = self._parts(ctx, shipped=_shipped(ctx, "AUTOENCODER_PRESETS", "LATENT_PRETRAIN_PRESETS"))
        size = ae.latent_size()
        return dpbench.Backbone(unet, codec, (ae.latent_channels, size, size))

    def export(self, ctx, directory):
        """Train (or take from the local cache) the autoencoder and latent U-Net of the current recipe and write
        both for shipping."""
        from dpbench.pretrain.autoencoder_pretraining import autoencoder_meta
        from dpbench.pretrain.pixel_pretraining import cached_meta
        from dpbench.pretrain.shipped import ShippedStore

        with ctx.stage("pretrain"):
            ae, config, codec, unet = self._parts(ctx, shipped=False)
        ae_meta = autoencoder_meta(ctx.public, ae, _training("AUTOENCODER_PRESETS", ctx), pair_name=ctx.pair.name,
                                   seed=PRETRAIN_SEED, cache_dir=ctx.cache_dir)
        unet_meta = cached_meta(ctx.public, config, _training("LATENT_PRETRAIN_PRESETS", ctx), pair_name=ctx.pair.name,
                                seed=PRETRAIN_SEED, cache_dir=ctx.cache_dir, encoder_key=codec.cache_key,
                                stream=public_stream(ctx))
        seconds = [m.get("train_seconds") for m in (ae_meta, unet_meta)]
        command = f"dpbench pretrain --pair {ctx.pair.name} --backbone latent --preset {ctx.preset}"
        store, recipe = ShippedStore(directory), self.recipe(ctx)
        ae_name, unet_name = self.shipped_names(ctx)
        total = None if None in seconds else sum(seconds)
        paths = store.write(ae_name, codec.model.state_dict(), recipe,
                            {"train_seconds": seconds[0], "command": command,
                             "parameters": sum(p.numel() for p in codec.model.parameters())})
        paths += store.write(unet_name, unet.state_dict(), recipe,
                             {"train_seconds": total, "unet_train_seconds": seconds[1], "command": command,
                              "parameters": sum(p.numel() for p in unet.parameters())})
        return paths


@dpbench.hookimpl
def dpbench_register_backbones(register):
    register(PixelBackbone())
    register(LatentBackbone())
