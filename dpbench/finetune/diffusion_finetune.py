"""Private fine-tuning of a diffusion backbone through the harness's DP engine, and the generator artifact.

Every diffusion method (LoDA, LoRA, attention-only, full) differs only in which parameters are trainable;
this module is what they share. Noise multiplicity K (Dockhorn et al. 2023, DPDM): each example's loss is
the mean over K independent (timestep, noise) draws, computed inside the per-example function, so the
gradient is averaged before clipping and one example's contribution stays <= C.
"""
from __future__ import annotations

import torch
from torch import nn

from dpbench.api.context import MethodContext
from dpbench.models.diffusion import DiffusionSchedule, ddim_sample, diffusion_loss, drop_labels, to_model_range
from dpbench.models.sampling_form import for_sampling
from dpbench.privacy.engine import DPSettings
from dpbench.privacy.per_example import with_batched_form


def diffusion_example_loss(schedule: DiffusionSchedule):
    """The per-example loss for the engine: mean diffusion loss over the example's K draws. Its batched form runs
    the B examples' K draws as B*K rows, example-major, and averages each example's K rows."""

    def batched(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        b, k = batch["t"].shape
        shape = batch["x0"].shape[1:]
        x0 = batch["x0"].unsqueeze(1).expand(b, k, *shape).reshape(b * k, *shape)
        rows = diffusion_loss(model, x0, batch["t"].reshape(-1), batch["noise"].reshape(b * k, *shape),
                              batch["y"].reshape(-1), schedule)
        return rows.view(b, k).mean(1)

    @with_batched_form(batched)
    def loss(model_fn, example: dict[str, torch.Tensor]) -> torch.Tensor:
        k = example["t"].shape[0]
        x0 = example["x0"].unsqueeze(0).expand(k, *example["x0"].shape)
        return diffusion_loss(model_fn, x0, example["t"], example["noise"], example["y"], schedule).mean()

    return loss


def diffusion_batch_maker(schedule: DiffusionSchedule, k: int, p_uncond: float, null_class: int,
                          min_timestep: int = 0):
    """Batches of (x0, K timesteps, K noises, K labels) per example from the step's (prepared) private examples.

    Timesteps are uniform on [min_timestep, T): a window above 0 spends the private gradient only on the noisier
    steps, which shape a sample's global structure, and leaves the public backbone's fine denoising as it is.
    """
    if not 0 <= min_timestep < schedule.num_steps:
        raise ValueError(f"min_timestep must be in [0, {schedule.num_steps}), got {min_timestep}")

    def make_batch(examples: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        x0, labels = examples["x"], examples["y"]
        b, device = x0.shape[0], x0.device
        t = torch.randint(min_timestep, schedule.num_steps, (b, k), generator=generator, device=device)
        noise = torch.randn((b, k, *x0.shape[1:]), generator=generator, device=device)
        y = drop_labels(labels.unsqueeze(1).expand(b, k).reshape(-1), p_uncond, null_class, generator).reshape(b, k)
        return {"x0": x0, "t": t, "noise": noise, "y": y}

    return make_batch


def finetune_diffusion(ctx: MethodContext, model: nn.Module, schedule: DiffusionSchedule, dp: DPSettings, *,
                       lr: float, p_uncond: float, min_timestep: int = 0, codec=None) -> None:
    """Fine-tune the model's trainable parameters on the private split through the run's DP engine.

    With a (frozen, public-trained) codec, the engine encodes the private examples to latents first; encoding
    is a fixed per-example map, so it changes nothing in the accounting.
    """
    model.to(ctx.device).train()
    prepare = codec.encode if codec is not None else to_model_range
    make_batch = diffusion_batch_maker(schedule, dp.noise_multiplicity, p_uncond, ctx.pair.num_classes,
                                      min_timestep)
    trainer = ctx.private_trainer(model, diffusion_example_loss(schedule), make_batch, dp, prepare=prepare)
    optimizer = torch.optim.Adam(list(trainer.trainable.values()), lr=lr)
    trainer.run(optimizer, ctx.progress)
    model.eval()


class DiffusionGenerator:
    """A class-conditional generator: a noise predictor sampled with DDIM and classifier-free guidance."""

    def __init__(self, model: nn.Module, schedule: DiffusionSchedule, image_shape: tuple[int, int, int], *,
                 ddim_steps: int, guidance_scale: float, batch_size: int, device: torch.device, codec=None,
                 ddim_eta: float = 1.0) -> None:
        # adapters merged or fused for inference (dpbench.models.sampling_form); the trained model is untouched
        self.model = for_sampling(model)
        self.schedule, self.image_shape, self.codec = schedule, image_shape, codec
        self.ddim_steps, self.guidance_scale, self.batch_size, self.device = ddim_steps, guidance_scale, batch_size, device
        self.ddim_eta = ddim_eta

    def sample(self, labels: torch.Tensor, seed: int, progress=None) -> torch.Tensor:
        generator = torch.Generator(device=self.device).manual_seed(seed)
        batches = -(-len(labels) // self.batch_size)
        task = progress.task("sample (DDIM)", total=batches) if progress else None
        images = ddim_sample(self.model, labels.to(self.device), self.image_shape, self.schedule,
                             steps=self.ddim_steps, guidance_scale=self.guidance_scale, eta=self.ddim_eta,
                             generator=generator,
                             batch_size=self.batch_size, progress_callback=(lambda n: task.advance(1)) if task else None,
                             decode=self.codec.decode if self.codec is not None else None)
        if task:
            task.close()
        return images.cpu()
