"""The latent backbone's autoencoder, trained on public images only and cached.

Latent diffusion (Rombach et al. 2022) runs the diffusion model in an autoencoder's latent space, with a
downsampling factor f. LDM's autoencoders are KL- or VQ-regularised; dpbench uses a deterministic one whose
latent passes through tanh, so latents lie in [-1, 1] like pixels and the pixel pipeline (DDIM's x0 clamp,
the same U-Net and loss) applies unchanged. That bottleneck is dpbench's choice for a small CPU-sized model,
not a paper's. f = 4 (two stride-2 stages), as LDM's f=4 models.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dpbench.data.types import ImageSet
from dpbench.models.diffusion import to_model_range, to_uint8
from dpbench.models.pretrain import atomic_save

AE_ARCH_VERSION = 1


@dataclass(frozen=True)
class AutoencoderConfig:
    image_size: int
    channels: int
    latent_channels: int = 4  # LDM's f=4 autoencoders use 3-4 latent channels (Rombach et al. 2022, Tab. 8)
    width: int = 32
    stages: int = 2  # downsampling factor f = 2**stages

    def latent_size(self) -> int:
        size = self.image_size
        for _ in range(self.stages):
            size = (size + 1) // 2
        return size

    def key(self) -> str:
        blob = json.dumps({"arch": AE_ARCH_VERSION, **asdict(self)}, sort_keys=True)
        return "ae-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class AutoencoderTraining:
    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3


class Autoencoder(nn.Module):
    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        layers: list[nn.Module] = [nn.Conv2d(config.channels, w, 3, padding=1), nn.SiLU()]
        for _ in range(config.stages):
            layers += [nn.Conv2d(w, w, 3, stride=2, padding=1), nn.SiLU(), nn.Conv2d(w, w, 3, padding=1), nn.SiLU()]
        layers += [nn.Conv2d(w, config.latent_channels, 1)]
        self.encoder = nn.Sequential(*layers)
        self.dec_in = nn.Conv2d(config.latent_channels, w, 3, padding=1)
        self.dec_blocks = nn.ModuleList(nn.Conv2d(w, w, 3, padding=1) for _ in range(config.stages))
        self.dec_out = nn.Conv2d(w, config.channels, 3, padding=1)
        sizes = [config.image_size]
        for _ in range(config.stages):
            sizes.append((sizes[-1] + 1) // 2)
        self.upsample_sizes = list(reversed(sizes[:-1]))  # e.g. 28 -> 14 -> 7 decodes 7 -> 14 -> 28

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images -> latents in [-1, 1]."""
        return torch.tanh(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.dec_in(z))
        for size, conv in zip(self.upsample_sizes, self.dec_blocks):
            h = F.silu(conv(F.interpolate(h, size=(size, size), mode="nearest")))
        return torch.tanh(self.dec_out(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class LatentCodec:
    """A frozen, public-trained autoencoder as the latent backbone sees it: uint8 images <-> latents."""

    def __init__(self, model: Autoencoder, device: torch.device, cache_key: str) -> None:
        self.model = model.to(device).eval()
        self.cache_key = cache_key
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = device
        self.config = model.config

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        parts = [self.model.encode(to_model_range(images[i:i + batch_size]).to(self.device))
                 for i in range(0, len(images), batch_size)]
        return torch.cat(parts) if parts else torch.empty(0)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return to_uint8(self.model.decode(latents.to(self.device)))


def public_autoencoder(public: ImageSet, config: AutoencoderConfig, training: AutoencoderTraining, *, pair_name: str,
                       seed: int, cache_dir: Path, device: torch.device, progress=None) -> LatentCodec:
    """The autoencoder trained on the public split only (cached), as a frozen codec."""
    if not isinstance(public, ImageSet):
        raise TypeError("public_autoencoder takes the public ImageSet only")
    key_blob = json.dumps({"pair": pair_name, "ae": config.key(), "train": asdict(training), "seed": seed}, sort_keys=True)
    key = hashlib.sha256(key_blob.encode()).hexdigest()[:20]
    path = Path(cache_dir) / "autoencoder" / f"{pair_name}-{key}.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Autoencoder(config)
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
    else:
        _train(model, public, training, seed, device, progress)
        atomic_save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                     "meta": {"pair": pair_name, "config": asdict(config), "train": asdict(training), "seed": seed,
                              "n_public": len(public)}}, path)
    return LatentCodec(model, device, cache_key=f"{config.key()}-{key}")


def _train(model: Autoencoder, public: ImageSet, training: AutoencoderTraining, seed: int, device: torch.device,
           progress) -> None:
    """MSE + L1 reconstruction with Adam (LDM adds perceptual and GAN losses; at 28-32 px these are left out)."""
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=training.lr)
    gen = torch.Generator().manual_seed(seed)
    task = progress.task("autoencoder (public)", total=training.steps) if progress is not None else None
    for _ in range(training.steps):
        idx = torch.randint(0, len(public), (training.batch_size,), generator=gen)
        x = to_model_range(public.images[idx]).to(device)
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
