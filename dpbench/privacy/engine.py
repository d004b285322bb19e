"""The core's DP-SGD engine, shared by every method.

Poisson sampling over the private split, per-example gradients of the trainable parameters only
(torch.func: functional_call + vmap(grad)), clipping to C, Gaussian noise sigma*C, sigma calibrated by
Opacus's accountant. torch.func was chosen by measurement (ARCHITECTURE.md: fastest or close for the
full, LoRA and LoDA scopes) and because it averages noise-multiplicity draws inside one example's
function, so one example's clipped contribution is <= C whatever K is.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from dpbench.privacy.accountant import DEFAULT_ACCOUNTANT, calibrate_noise, epsilon_spent
from dpbench.privacy.ledger import PrivacyLedger

# loss(model_fn, example) -> scalar, where example holds one private example's tensors (no batch dim)
# and model_fn(*inputs) runs the model with the parameters being differentiated.
PerExampleLoss = Callable[[Callable[..., torch.Tensor], dict[str, torch.Tensor]], torch.Tensor]
# make_batch(indices, generator) -> dict of tensors with a leading batch dimension len(indices)
MakeBatch = Callable[[torch.Tensor, torch.Generator], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class DPConfig:
    epsilon: float
    delta: float
    expected_batch_size: int
    steps: int
    max_grad_norm: float
    accountant: str = DEFAULT_ACCOUNTANT
    noise_multiplicity: int = 1  # K draws per example, averaged before clipping
    physical_batch_size: int = 64  # examples per vmap chunk; bounds memory, not privacy


def plan_privacy(config: DPConfig, n_private: int) -> PrivacyLedger:
    """Calibrate sigma for the planned steps; the ledger is what the run will have spent when it ends."""
    sample_rate = min(1.0, config.expected_batch_size / n_private)
    private = math.isfinite(config.epsilon)
    sigma = calibrate_noise(config.epsilon, config.delta, sample_rate, config.steps, config.accountant) if private else 0.0
    return PrivacyLedger(
        accountant=config.accountant, noise_multiplier=sigma, sample_rate=sample_rate, steps=config.steps,
        max_grad_norm=config.max_grad_norm if private else None, delta=config.delta,
        noise_multiplicity=config.noise_multiplicity, epsilon_target=config.epsilon,
    )


def clip_and_sum(per_example: dict[str, torch.Tensor], max_grad_norm: float) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Clip each example's whole gradient (all parameters together) to norm <= C and sum over the batch."""
    flat = torch.cat([g.reshape(g.shape[0], -1) for g in per_example.values()], dim=1)
    norms = flat.norm(dim=1)
    factors = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    summed = {name: torch.einsum("b,b...->...", factors, g) for name, g in per_example.items()}
    return summed, norms


def add_gaussian_noise(summed: dict[str, torch.Tensor], noise_multiplier: float, max_grad_norm: float,
                       generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Add N(0, (sigma*C)^2) to every coordinate of the summed clipped gradient."""
    std = noise_multiplier * max_grad_norm
    return {
        name: g + std * torch.randn(g.shape, generator=generator, device=g.device, dtype=g.dtype)
        for name, g in summed.items()
    }


class DPSGDEngine:
    """Runs the planned DP-SGD steps on a model's trainable parameters with a method's loss and optimizer."""

    def __init__(self, model: nn.Module, loss: PerExampleLoss, config: DPConfig, n_private: int,
                 device: torch.device, seed: int) -> None:
        self.model, self.loss, self.config, self.n_private, self.device = model, loss, config, n_private, device
        self.ledger = plan_privacy(config, n_private)
        self.trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if not self.trainable:
            raise ValueError("the model has no trainable parameters")
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.sampling_generator = torch.Generator().manual_seed(seed + 1)
        self.steps_done = 0
        self.batch_sizes: list[int] = []

        frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
        buffers = dict(model.named_buffers())

        def example_loss(params: dict[str, torch.Tensor], example: dict[str, torch.Tensor]) -> torch.Tensor:
            def model_fn(*inputs: torch.Tensor) -> torch.Tensor:
                return functional_call(model, ({**frozen, **params}, buffers), inputs)
            return loss(model_fn, example)

        self._per_example_grads = vmap(grad(example_loss), in_dims=(None, 0))

    @property
    def private(self) -> bool:
        return self.ledger.is_private

    def sample_indices(self) -> torch.Tensor:
        """Poisson sampling: each private example joins the batch independently with the sample rate."""
        mask = torch.rand(self.n_private, generator=self.sampling_generator) < self.ledger.sample_rate
        return mask.nonzero().flatten()

    def per_example_grads(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        params = {n: p.detach() for n, p in self.trainable.items()}
        return self._per_example_grads(params, batch)

    def noisy_gradient(self, make_batch: MakeBatch) -> dict[str, torch.Tensor]:
        """One step's privatised gradient: sum of clipped per-example grads + noise, over the expected batch size."""
        indices = self.sample_indices()
        self.batch_sizes.append(len(indices))
        total = {n: torch.zeros_like(p) for n, p in self.trainable.items()}
        # K draws per example multiply activation memory by K, so the chunk shrinks by K to keep it flat.
        chunk = max(1, self.config.physical_batch_size // self.config.noise_multiplicity)
        for start in range(0, len(indices), chunk):
            batch = {k: v.to(self.device) for k, v in make_batch(indices[start:start + chunk], self.generator).items()}
            grads = self.per_example_grads(batch)
            if self.private:
                grads, _ = clip_and_sum(grads, self.config.max_grad_norm)
            else:
                grads = {n: g.sum(0) for n, g in grads.items()}
            for n in total:
                total[n] += grads[n]
        if self.private:
            total = add_gaussian_noise(total, self.ledger.noise_multiplier, self.config.max_grad_norm, self.generator)
            denominator = self.ledger.sample_rate * self.n_private
        else:
            denominator = max(len(indices), 1)
        return {n: g / denominator for n, g in total.items()}

    def step(self, make_batch: MakeBatch, optimizer: torch.optim.Optimizer) -> None:
        if self.steps_done >= self.ledger.steps:
            raise RuntimeError("the planned number of DP steps is spent; more steps would exceed the ledger")
        gradient = self.noisy_gradient(make_batch)
        for name, param in self.trainable.items():
            param.grad = gradient[name]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.steps_done += 1

    def epsilon_so_far(self) -> float:
        if not self.private:
            return math.inf
        return epsilon_spent(self.ledger.noise_multiplier, self.ledger.sample_rate, self.steps_done,
                             self.ledger.delta, self.ledger.accountant)

    def run(self, make_batch: MakeBatch, optimizer: torch.optim.Optimizer, progress=None,
            description: str = "DP fine-tune (private)") -> PrivacyLedger:
        """All planned steps, with a progress bar that shows epsilon spent so far."""
        task = progress.task(description, total=self.ledger.steps) if progress else None
        report_every = max(1, self.ledger.steps // 20)
        for _ in range(self.ledger.steps - self.steps_done):
            self.step(make_batch, optimizer)
            if task:
                fields = {"eps": self.epsilon_so_far()} if self.steps_done % report_every == 0 or self.steps_done == self.ledger.steps else {}
                task.advance(1, **fields)
        if task:
            task.close()
        return self.spent_ledger()

    def spent_ledger(self) -> PrivacyLedger:
        """The ledger of the steps actually taken (equal to the plan once `run` has finished)."""
        return dataclasses.replace(self.ledger, steps=self.steps_done)
