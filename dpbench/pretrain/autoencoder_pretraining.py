"""Public training of the latent backbone's autoencoder, cached on disk. It is handed the public split only."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from dpbench.data.types import ImageSet
from dpbench.models.autoencoder import Autoencoder, AutoencoderConfig, LatentCodec
from dpbench.models.diffusion import to_model_range
from dpbench.pretrain.augment import Augmentation, augment
from dpbench.pretrain.shipped import ShippedStore
from dpbench.storage import atomic_torch_save, cache_build_lock, cache_key, tensor_digest


@dataclass(frozen=True)
class AutoencoderTraining:
    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3
    # The public digits are soft 8x8 blobs: without the pixel backbone's augmentation (crisp strokes of varying
    # width) the decoder never learns to draw a crisp stroke, and reconstructs crisp public variants 14x worse.
    augmentation: Augmentation | None = None


def public_autoencoder(public: ImageSet, config: AutoencoderConfig, training: AutoencoderTraining, *, pair_name: str,
                       seed: int, cache_dir: Path, device: torch.device, progress=None,
                       shipped: tuple[ShippedStore, str, dict, str] | None = None) -> LatentCodec:
    """The autoencoder trained on the public split only (cached), as a frozen codec.

    With `shipped` (store, name, recipe, hint), weights shipped for exactly this recipe are used as they are."""
    if not isinstance(public, ImageSet):
        raise TypeError("public_autoencoder takes the public ImageSet only")
    key, path = _cache_entry(public, config, training, pair_name, seed, cache_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Autoencoder(config)
    state = shipped[0].load(*shipped[1:]) if shipped is not None else None
    if state is not None:
        model.load_state_dict(state)
    else:
        with cache_build_lock(path):  # parallel runs (a sweep's cells) train a missing autoencoder once
            _load_or_train(model, public, config, training, key, path, pair_name, seed, device, progress)
    model.eval()
    return LatentCodec(model, device, cache_key=f"{config.key()}-{key}")


def _load_or_train(model: Autoencoder, public: ImageSet, config: AutoencoderConfig, training: AutoencoderTraining,
                   key: str, path: Path, pair_name: str, seed: int, device: torch.device, progress) -> None:
    if path.exists() and _entry_matches(path, key):
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
        return
    # no entry, or one whose recorded key differs (another public set, a tampered or older file): rebuild
    started = time.perf_counter()
    _train(model, public, training, seed, device, progress)
    atomic_torch_save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                       "meta": {"key": key, "pair": pair_name, "config": asdict(config), "train": asdict(training),
                                "seed": seed, "n_public": len(public),
                                "train_seconds": time.perf_counter() - started}}, path)


def _entry_matches(path, key: str) -> bool:
    return torch.load(path, map_location="cpu", weights_only=True).get("meta", {}).get("key") == key


def autoencoder_meta(public: ImageSet, config: AutoencoderConfig, training: AutoencoderTraining, *, pair_name: str,
                     seed: int, cache_dir: Path) -> dict:
    """The metadata of the cache entry `public_autoencoder` would use ({} when there is none)."""
    _, path = _cache_entry(public, config, training, pair_name, seed, cache_dir)
    return torch.load(path, map_location="cpu", weights_only=True).get("meta", {}) if path.exists() else {}


def _cache_entry(public: ImageSet, config: AutoencoderConfig, training: AutoencoderTraining, pair_name: str,
                 seed: int, cache_dir: Path) -> tuple[str, Path]:
    key = cache_key({"pair": pair_name, "ae": config.key(), "train": asdict(training), "seed": seed,
                     "public_digest": tensor_digest(public.images, public.labels)}, length=20)
    return key, Path(cache_dir) / "autoencoder" / f"{pair_name}-{key}.pt"


def _train(model: Autoencoder, public: ImageSet, training: AutoencoderTraining, seed: int, device: torch.device,
           progress) -> None:
    """MSE + L1 reconstruction with Adam (LDM adds perceptual and GAN losses; at 28-32 px these are left out)."""
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=training.lr)
    gen = torch.Generator().manual_seed(seed)
    task = progress.task("autoencoder (public)", total=training.steps) if progress is not None else None
    for _ in range(training.steps):
        idx = torch.randint(0, len(public), (training.batch_size,), generator=gen)
        x = to_model_range(public.images[idx])
        if training.augmentation is not None:
            x = augment(x, training.augmentation, gen)
        x = x.to(device)
        recon = model(x)
        loss = F.mse_loss(recon, x) + 0.1 * F.l1_loss(recon, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if task is not None:
            task.advance(1, loss=loss.item())
    if task is not None:
        task.close()
    model.eval()
