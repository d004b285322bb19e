"""Public pre-training of the class-conditional U-Net, cached on disk.

`pretrained_unet` takes one ImageSet, the public split, and nothing else: no code path here can see private
data. The cache entry is keyed by pair, architecture, training config and seed, so every method, epsilon and
run seed that needs the same backbone reuses it.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from dpbench.data.types import ImageSet
from dpbench.models.diffusion import P_UNCOND, DiffusionSchedule, diffusion_loss, drop_labels, to_model_range
from dpbench.models.unet import ClassConditionalUNet, UNetConfig
from dpbench.pretrain.augment import Augmentation, augment
from dpbench.pretrain.shipped import ShippedStore
from dpbench.storage import atomic_torch_save, cache_build_lock, cache_key, canonical_json, tensor_digest

CACHE_FORMAT = 1  # bump when the training code changes what a cached entry means


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 1500
    batch_size: int = 64
    # Above DDPM's 2e-4 (Ho et al. 2020): a CPU budget allows only ~1e3 steps, and this small model takes it.
    lr: float = 1e-3
    p_uncond: float = P_UNCOND
    # EMA of weights (Ho et al. 2020 use 0.9999 over 800k steps); with warm-up, since runs here are short.
    ema_decay: float | None = 0.999
    grad_clip: float = 1.0  # gradient-norm clipping at 1 (Ho et al. 2020)
    augmentation: Augmentation | None = None  # applied to pixels; a latent backbone encodes each augmented batch

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augmentation"] = self.augmentation.to_dict() if self.augmentation else None
        return d


@dataclass(frozen=True)
class PublicStream:
    """A large public set streamed in chunks (e.g. all of ImageNet32) for the unconditional first phase.

    `chunks(chunk_size=..., seed=...)` yields ImageSets; `conditional_after` says whether a class-conditional
    phase on the (small, labelled) public split follows. Two phases, unconditional then class-conditional,
    is the DP-LoDA paper's ImageNet32 -> CIFAR-10 recipe; unconditional only suits a public set whose labels
    are not the pair's classes (ImageNet -> CelebA).
    """

    name: str
    chunks: Callable[..., Iterator[ImageSet]]
    conditional_after: bool
    unconditional_fraction: float = 0.5  # share of the steps spent on the stream when a conditional phase follows

    def key(self) -> dict:
        return {"stream": self.name, "conditional_after": self.conditional_after,
                "unconditional_fraction": self.unconditional_fraction}


def pretrain_cache_fields(pair_name: str, config: UNetConfig, train: PretrainConfig, seed: int,
                          encoder_key: str | None = None, stream: PublicStream | None = None,
                          public_digest: str | None = None) -> dict:
    """Everything a cached backbone depends on, the public data's digest included; stored in the entry and
    compared on load."""
    fields = {"format": CACHE_FORMAT, "pair": pair_name, "unet": config.key(), "train": train.to_dict(), "seed": seed,
              "public_digest": public_digest}
    if encoder_key is not None:  # a latent U-Net belongs to the autoencoder whose latents it learnt
        fields["encoder"] = encoder_key
    if stream is not None:
        fields["phases"] = stream.key()
    return fields


def pretrain_cache_path(pair_name: str, config: UNetConfig, train: PretrainConfig, seed: int, cache_dir: Path,
                        encoder_key: str | None = None, stream: PublicStream | None = None,
                        public_digest: str | None = None) -> Path:
    fields = pretrain_cache_fields(pair_name, config, train, seed, encoder_key, stream, public_digest)
    digest = cache_key(fields, length=20)
    safe_pair = "".join(c if c.isalnum() or c in "-_" else "_" for c in pair_name)
    return Path(cache_dir) / "pretrain" / f"{safe_pair}-{digest}.pt"


def pretrained_unet(
    public: ImageSet,
    config: UNetConfig,
    train: PretrainConfig,
    *,
    pair_name: str,
    seed: int,
    cache_dir: Path,
    device: torch.device | str,
    progress=None,
    encoder=None,
    stream: PublicStream | None = None,
    shipped: tuple[ShippedStore, str, dict, str] | None = None,
) -> ClassConditionalUNet:
    """The U-Net pre-trained on `public` (loaded from the cache when present), on `device`, in eval mode.

    With `encoder` (a public-trained LatentCodec), the U-Net learns the public images' latents instead.
    With `stream`, training starts unconditionally on the streamed public set (see PublicStream).
    With `shipped` (store, name, recipe, hint), weights shipped for exactly this recipe are used as they are.
    """
    if not isinstance(public, ImageSet):
        raise TypeError("pretrained_unet takes the public ImageSet only")
    device = torch.device(device)
    encoder_key = getattr(encoder, "cache_key", None) if encoder is not None else None
    public_digest = tensor_digest(public.images, public.labels)
    path = pretrain_cache_path(pair_name, config, train, seed, cache_dir, encoder_key, stream,
                               public_digest=public_digest)
    fields = pretrain_cache_fields(pair_name, config, train, seed, encoder_key, stream, public_digest)
    model = _init_model(config, seed)
    if shipped is not None:
        store, name, recipe, hint = shipped
        state = store.load(name, recipe, hint)
        if state is not None:
            model.load_state_dict(state)
            return model.to(device).eval()
    with cache_build_lock(path):  # parallel runs (a sweep's cells) train a missing backbone once
        if path.exists():
            entry = torch.load(path, map_location="cpu", weights_only=True)
            if canonical_json(entry.get("meta", {}).get("key")) == canonical_json(fields):
                model.load_state_dict(entry["state_dict"])
                return model.to(device).eval()
            # an entry whose recorded key differs (another public set, a tampered or older file): rebuild, never reuse
        encode = (lambda images: encoder.encode(images).cpu()) if encoder is not None else to_model_range
        gen = torch.Generator().manual_seed(seed)
        phases = []
        if stream is not None:
            steps = round(train.steps * stream.unconditional_fraction) if stream.conditional_after else train.steps
            phases.append(("pre-train (public, unconditional)", steps,
                           _stream_batches(stream, train.batch_size, model.null_class, encode, seed)))
        if stream is None or stream.conditional_after:
            if train.augmentation is None:
                batches = _tensor_batches(encode(public.images), public.labels, train.batch_size, train.p_uncond,
                                          model.null_class, gen)
            else:  # augment in pixel space, then (latent backbones) encode each augmented batch
                batches = _tensor_batches(to_model_range(public.images), public.labels, train.batch_size,
                                          train.p_uncond, model.null_class, gen)
                batches = ((augment(x0, train.augmentation, gen), y) for x0, y in batches)
                if encoder is not None:
                    batches = ((encoder.encode_model_range(x0).cpu(), y) for x0, y in batches)
            phases.append(("pre-train (public)", train.steps - sum(p[1] for p in phases), batches))
        started = time.perf_counter()
        state = _train(model, phases, train, gen, device, progress)
        train_seconds = time.perf_counter() - started
        model.load_state_dict(state)
        meta = {"key": fields, "pair": pair_name, "unet": config.to_dict(), "train": train.to_dict(), "seed": seed,
                "format": CACHE_FORMAT, "n_public": len(public), "train_seconds": train_seconds}
        atomic_torch_save({"state_dict": state, "meta": meta}, path)
        return model.to(device).eval()


def cached_meta(public: ImageSet, config: UNetConfig, train: PretrainConfig, *, pair_name: str, seed: int,
                cache_dir: Path, encoder_key: str | None = None, stream: PublicStream | None = None) -> dict:
    """The metadata of the cache entry `pretrained_unet` would use ({} when there is none)."""
    public_digest = tensor_digest(public.images, public.labels)
    path = pretrain_cache_path(pair_name, config, train, seed, cache_dir, encoder_key, stream,
                               public_digest=public_digest)
    fields = pretrain_cache_fields(pair_name, config, train, seed, encoder_key, stream, public_digest)
    if not path.exists():
        return {}
    return torch.load(path, map_location="cpu", weights_only=True).get("meta", {})


def _init_model(config: UNetConfig, seed: int) -> ClassConditionalUNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ClassConditionalUNet(config)


def _tensor_batches(x0_all: torch.Tensor, labels: torch.Tensor, batch_size: int, p_uncond: float, null_class: int,
                    gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled epochs over a labelled set, labels dropped to the null class with p_uncond (CFG)."""
    n = len(labels)
    while True:
        order = torch.randperm(n, generator=gen)
        for pos in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            idx = order[pos:pos + batch_size]
            yield x0_all[idx], drop_labels(labels[idx], p_uncond, null_class, gen)


def _stream_batches(stream: PublicStream, batch_size: int, null_class: int, encode, seed: int
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless passes over the streamed set in its chunk order; every label is the null class."""
    epoch = 0
    while True:
        empty = True
        for chunk in stream.chunks(chunk_size=max(4096, batch_size), seed=seed + epoch):
            x0 = encode(chunk.images)
            for pos in range(0, len(chunk) - batch_size + 1, batch_size):
                empty = False
                yield x0[pos:pos + batch_size], torch.full((batch_size,), null_class, dtype=torch.long)
        if empty:
            raise ValueError(f"the public stream '{stream.name}' holds fewer than one batch ({batch_size}) of images")
        epoch += 1


def _train(model: ClassConditionalUNet, phases, train: PretrainConfig, gen: torch.Generator, device: torch.device,
           progress) -> dict[str, torch.Tensor]:
    """Adam on L_simple over each phase's batches; no augmentation (flips would change digits). Returns CPU weights."""
    model.to(device).train()
    schedule = DiffusionSchedule()
    opt = torch.optim.Adam(model.parameters(), lr=train.lr)
    ema = copy.deepcopy(model).eval() if train.ema_decay is not None else None
    step = 0
    for description, steps, batches in phases:
        task = progress.task(description, total=steps) if progress is not None else None
        for _ in range(steps):
            x0, y = next(batches)
            x0, y = x0.to(device), y.to(device)
            b = x0.shape[0]
            t = torch.randint(0, schedule.num_steps, (b,), generator=gen).to(device)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            loss = diffusion_loss(model, x0, t, noise, y, schedule).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
            opt.step()
            if ema is not None:
                _ema_update(ema, model, min(train.ema_decay, (1 + step) / (10 + step)))
            step += 1
            if task is not None:
                task.advance(1, loss=loss.item())
        if task is not None:
            task.close()
    final = ema if ema is not None else model
    return {k: v.detach().cpu().clone() for k, v in final.state_dict().items()}


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1.0 - decay)
