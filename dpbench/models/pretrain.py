"""Public pre-training of the class-conditional U-Net, cached on disk.

`pretrained_unet` takes one ImageSet, the public split, and nothing else: no code path here can see private
data. The cache entry is keyed by pair, architecture, training config and seed, so every method, epsilon and
run seed that needs the same backbone reuses it.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from dpbench.data.types import ImageSet
from dpbench.models.diffusion import P_UNCOND, DiffusionSchedule, diffusion_loss, drop_labels, to_model_range
from dpbench.models.unet import ClassConditionalUNet, UNetConfig

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

    def to_dict(self) -> dict:
        return asdict(self)


def pretrain_cache_path(pair_name: str, config: UNetConfig, train: PretrainConfig, seed: int, cache_dir: Path,
                        encoder_key: str | None = None) -> Path:
    fields = {"format": CACHE_FORMAT, "pair": pair_name, "unet": config.key(), "train": train.to_dict(), "seed": seed}
    if encoder_key is not None:  # a latent U-Net belongs to the autoencoder whose latents it learnt
        fields["encoder"] = encoder_key
    blob = json.dumps(fields, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:20]
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
) -> ClassConditionalUNet:
    """The U-Net pre-trained on `public` (loaded from the cache when present), on `device`, in eval mode.

    With `encoder` (a public-trained LatentCodec), the U-Net learns the public images' latents instead.
    """
    if not isinstance(public, ImageSet):
        raise TypeError("pretrained_unet takes the public ImageSet only")
    device = torch.device(device)
    encoder_key = getattr(encoder, "cache_key", None) if encoder is not None else None
    path = pretrain_cache_path(pair_name, config, train, seed, cache_dir, encoder_key)
    model = _init_model(config, seed)
    if path.exists():
        entry = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(entry["state_dict"])
        return model.to(device).eval()
    x0_all = encoder.encode(public.images).cpu() if encoder is not None else to_model_range(public.images)
    state = _train(model, x0_all, public.labels, train, seed, device, progress)
    model.load_state_dict(state)
    atomic_save(
        {"state_dict": state, "meta": {"pair": pair_name, "unet": config.to_dict(), "train": train.to_dict(),
                                       "seed": seed, "format": CACHE_FORMAT, "n_public": len(public)}},
        path,
    )
    return model.to(device).eval()


def _init_model(config: UNetConfig, seed: int) -> ClassConditionalUNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ClassConditionalUNet(config)


def _train(
    model: ClassConditionalUNet, x0_all: torch.Tensor, labels: torch.Tensor, train: PretrainConfig, seed: int,
    device: torch.device, progress
) -> dict[str, torch.Tensor]:
    """Adam on L_simple with label dropout; no augmentation (flips would change digits). Returns CPU weights."""
    model.to(device).train()
    schedule = DiffusionSchedule()
    opt = torch.optim.Adam(model.parameters(), lr=train.lr)
    ema = copy.deepcopy(model).eval() if train.ema_decay is not None else None
    gen = torch.Generator().manual_seed(seed)
    n = len(labels)
    order = torch.randperm(n, generator=gen)
    pos = 0
    task = progress.task("pre-train (public)", total=train.steps) if progress is not None else None
    for step in range(train.steps):
        if pos + train.batch_size > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos:pos + train.batch_size]
        pos += train.batch_size
        x0 = x0_all[idx].to(device)
        b = x0.shape[0]
        t = torch.randint(0, schedule.num_steps, (b,), generator=gen).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        y = drop_labels(labels[idx], train.p_uncond, model.null_class, gen).to(device)
        loss = diffusion_loss(model, x0, t, noise, y, schedule).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        opt.step()
        if ema is not None:
            _ema_update(ema, model, min(train.ema_decay, (1 + step) / (10 + step)))
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


def atomic_save(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
