"""The latent backbone's autoencoder (training on public images lives in dpbench.pretrain.autoencoder_pretraining).

Latent diffusion (Rombach et al. 2022) runs the diffusion model in an autoencoder's latent space, with a
downsampling factor f. LDM's autoencoders are KL- or VQ-regularised; dpbench uses a deterministic one whose
latent passes through tanh, so latents lie in [-1, 1] like pixels and the pixel pipeline (DDIM's x0 clamp,
the same U-Net and loss) applies unchanged. That bottleneck is dpbench's choice for a small CPU-sized model,
not a paper's. f = 4 (two stride-2 stages), as LDM's f=4 models.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dpbench.models.diffusion import to_model_range, to_uint8
from dpbench.storage import cache_key

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
        return "ae-" + cache_key({"arch": AE_ARCH_VERSION, **asdict(self)})


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
    def encode_model_range(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] float images (e.g. an augmented batch) -> latents."""
        return self.model.encode(images.to(self.device))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return to_uint8(self.model.decode(latents.to(self.device)))
