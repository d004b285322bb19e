"""DDPM noise schedule and loss (Ho et al. 2020), classifier-free guidance (Ho & Salimans 2022), DDIM sampling
(Song et al. 2021).

`diffusion_loss` and `drop_labels` take all their randomness as arguments, so the loss is a pure function of
(parameters, data, t, noise, labels) and the DP engine can vmap it per example.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x, t, y) -> eps

from dpbench.models.guidance import P_UNCOND  # noqa: E402,F401 - re-exported


@dataclass(frozen=True)
class DiffusionSchedule:
    """Linear beta schedule, beta_1 = 1e-4 .. beta_T = 0.02 over T = 1000 steps (Ho et al. 2020, Sec. 4)."""

    num_steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    @property
    def betas(self) -> torch.Tensor:
        return torch.linspace(self.beta_start, self.beta_end, self.num_steps, dtype=torch.float64)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """abar_t = prod_{s<=t} (1 - beta_s), float64 (N,), index t in [0, T)."""
        return torch.cumprod(1.0 - self.betas, dim=0)


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]. In place on one fresh copy: the engine maps the whole private split at
    once, and `x.float() / 127.5 - 1.0` held two float32 copies of it (16 GB for CelebA at 64 px)."""
    return images.to(torch.float32, copy=True).div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] (clamped) -> uint8 [0, 255]."""
    return ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: DiffusionSchedule) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise."""
    abar = schedule.alphas_cumprod.to(device=x0.device, dtype=x0.dtype)[t].reshape(-1, *([1] * (x0.dim() - 1)))
    return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise


def diffusion_loss(
    model_fn: ModelFn,
    x0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    y: torch.Tensor,
    schedule: DiffusionSchedule | None = None,
) -> torch.Tensor:
    """Per-example eps-prediction MSE ("L_simple", Ho et al. 2020), shape (B,)."""
    schedule = schedule or DiffusionSchedule()
    eps = model_fn(q_sample(x0, t, noise, schedule), t, y)
    return (eps - noise).square().flatten(1).mean(dim=1)


def drop_labels(
    y: torch.Tensor, p_uncond: float, null_class: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Replace each label by `null_class` with probability p_uncond (classifier-free guidance training)."""
    gen_device = generator.device if generator is not None else y.device
    drop = torch.rand(y.shape, generator=generator, device=gen_device).to(y.device) < p_uncond
    return torch.where(drop, torch.full_like(y, null_class), y)


def ddim_timesteps(num_train_steps: int, steps: int) -> list[int]:
    """`steps` evenly spaced timesteps in [0, T), descending."""
    ts = torch.linspace(0, num_train_steps - 1, steps).round().long().unique()
    return ts.flip(0).tolist()


@torch.no_grad()
def ddim_sample(
    model: torch.nn.Module,
    labels: torch.Tensor,
    shape: tuple[int, int, int],
    schedule: DiffusionSchedule,
    steps: int = 50,
    guidance_scale: float = 2.0,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
    progress_callback: Callable[[int], None] | None = None,
    null_class: int | None = None,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Class-conditional DDIM samples (Song et al. 2021) with classifier-free guidance; uint8 (N, C, H, W) on CPU.

    eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond) (Ho & Salimans 2022); scale 1 is plain
    conditional sampling, larger scales trade diversity for class fidelity. 2.0 is this benchmark's choice,
    not a paper's; choose it on public data only. eta = 0 is deterministic DDIM, eta = 1 DDPM-like.
    `progress_callback(n)` is called after each batch with the n images it finished. `decode` maps the final
    x (in [-1, 1]) to uint8 images, e.g. a latent model's decoder; by default x is the image itself.
    """
    device = next(model.parameters()).device
    null_class = model.null_class if null_class is None else null_class
    abar = schedule.alphas_cumprod.tolist()
    ts = ddim_timesteps(schedule.num_steps, steps)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, labels.shape[0], batch_size):
            y = labels[start:start + batch_size].to(device)
            n = y.shape[0]
            x = torch.randn((n, *shape), generator=generator, device=gen_device).to(device)
            y_in = torch.cat([y, torch.full_like(y, null_class)]) if guidance_scale != 1.0 else y
            for i, t in enumerate(ts):
                a_t = abar[t]
                a_prev = abar[ts[i + 1]] if i + 1 < len(ts) else 1.0
                eps = _guided_eps(model, x, t, y_in, guidance_scale)
                x0 = ((x - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5).clamp(-1.0, 1.0)
                eps = (x - a_t ** 0.5 * x0) / (1 - a_t) ** 0.5  # consistent with the clipped x0
                sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
                x = a_prev ** 0.5 * x0 + max(1 - a_prev - sigma ** 2, 0.0) ** 0.5 * eps
                if sigma > 0:
                    x = x + sigma * torch.randn(x.shape, generator=generator, device=gen_device).to(device)
            out.append((decode(x) if decode is not None else to_uint8(x)).cpu())
            if progress_callback is not None:
                progress_callback(n)
    finally:
        model.train(was_training)
    if not out:
        if decode is not None:
            raise ValueError("no labels to sample")
        return torch.empty((0, *shape), dtype=torch.uint8)
    return torch.cat(out)


def _guided_eps(model: torch.nn.Module, x: torch.Tensor, t: int, y_in: torch.Tensor, scale: float) -> torch.Tensor:
    n = x.shape[0]
    x_in = torch.cat([x, x]) if y_in.shape[0] != n else x
    t_in = torch.full((x_in.shape[0],), t, dtype=torch.long, device=x.device)
    eps = model(x_in, t_in, y_in)
    if y_in.shape[0] == n:
        return eps
    eps_cond, eps_uncond = eps[:n], eps[n:]
    return eps_uncond + scale * (eps_cond - eps_uncond)
