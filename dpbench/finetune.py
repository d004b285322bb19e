"""Private fine-tuning of a diffusion backbone through the core's DP-SGD engine, and the generator artifact.

Every diffusion method (LoDA, LoRA, attention-only, full) differs only in which parameters are trainable;
this module is what they share. Noise multiplicity K (Dockhorn et al. 2023, DPDM): each example's loss is
the mean over K independent (timestep, noise) draws, computed inside the per-example function, so the
gradient is averaged before clipping and one example's contribution stays <= C.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dpbench.data.types import ImageSet
from dpbench.models.diffusion import DiffusionSchedule, ddim_sample, diffusion_loss, drop_labels, to_model_range
from dpbench.privacy.engine import DPConfig, DPSGDEngine
from dpbench.privacy.ledger import PrivacyLedger


@dataclass(frozen=True)
class DiffusionFinetuneConfig:
    dp: DPConfig
    lr: float
    p_uncond: float  # class dropout for classifier-free guidance (Ho & Salimans 2022)
    num_classes: int


def diffusion_example_loss(schedule: DiffusionSchedule):
    """The per-example loss for the engine: mean diffusion loss over the example's K draws."""

    def loss(model_fn, example: dict[str, torch.Tensor]) -> torch.Tensor:
        k = example["t"].shape[0]
        x0 = example["x0"].unsqueeze(0).expand(k, *example["x0"].shape)
        return diffusion_loss(model_fn, x0, example["t"], example["noise"], example["y"], schedule).mean()

    return loss


def diffusion_batch_maker(x0_all: torch.Tensor, labels: torch.Tensor, schedule: DiffusionSchedule, k: int,
                          p_uncond: float, null_class: int, device: torch.device):
    """Batches of (x0, K timesteps, K noises, K labels) per example; x0_all is the private split in model range."""
    x0_all, labels = x0_all.to(device), labels.to(device)

    def make_batch(indices: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        indices = indices.to(device)
        x0 = x0_all[indices]
        b = x0.shape[0]
        t = torch.randint(0, schedule.num_steps, (b, k), generator=generator, device=device)
        noise = torch.randn((b, k, *x0.shape[1:]), generator=generator, device=device)
        y = drop_labels(labels[indices].unsqueeze(1).expand(b, k).reshape(-1), p_uncond, null_class, generator).reshape(b, k)
        return {"x0": x0, "t": t, "noise": noise, "y": y}

    return make_batch


def finetune_diffusion(model: nn.Module, private: ImageSet, schedule: DiffusionSchedule,
                       config: DiffusionFinetuneConfig, *, device: torch.device, seed: int, progress,
                       codec=None) -> PrivacyLedger:
    """Fine-tune the model's trainable parameters on the private split under DP; returns the spent ledger.

    With a (frozen, public-trained) codec, examples are encoded to latents first; encoding is a fixed
    per-example map, so it changes nothing in the accounting.
    """
    model.to(device).train()
    engine = DPSGDEngine(model, diffusion_example_loss(schedule), config.dp, len(private), device, seed)
    optimizer = torch.optim.Adam(list(engine.trainable.values()), lr=config.lr)
    x0_all = codec.encode(private.images) if codec is not None else to_model_range(private.images)
    make_batch = diffusion_batch_maker(x0_all, private.labels, schedule, config.dp.noise_multiplicity,
                                       config.p_uncond, config.num_classes, device)
    return engine.run(make_batch, optimizer, progress)


class DiffusionGenerator:
    """A class-conditional generator: a noise predictor sampled with DDIM and classifier-free guidance."""

    def __init__(self, model: nn.Module, schedule: DiffusionSchedule, image_shape: tuple[int, int, int], *,
                 ddim_steps: int, guidance_scale: float, batch_size: int, device: torch.device, codec=None) -> None:
        self.model, self.schedule, self.image_shape, self.codec = model, schedule, image_shape, codec
        self.ddim_steps, self.guidance_scale, self.batch_size, self.device = ddim_steps, guidance_scale, batch_size, device

    def sample(self, labels: torch.Tensor, seed: int, progress=None) -> torch.Tensor:
        generator = torch.Generator(device=self.device).manual_seed(seed)
        batches = -(-len(labels) // self.batch_size)
        task = progress.task("sample (DDIM)", total=batches) if progress else None
        images = ddim_sample(self.model, labels.to(self.device), self.image_shape, self.schedule,
                             steps=self.ddim_steps, guidance_scale=self.guidance_scale, generator=generator,
                             batch_size=self.batch_size, progress_callback=(lambda n: task.advance(1)) if task else None,
                             decode=self.codec.decode if self.codec is not None else None)
        if task:
            task.close()
        return images.cpu()
