"""The core's DP-SGD engine, shared by every method. Methods get one from their run context, never build one.

Poisson sampling over the private split, per-example gradients of the trainable parameters only, clipping to
C, Gaussian noise sigma*C, sigma calibrated by Opacus's accountant. How the clipped sum of a physical batch is
computed (torch.func's vmap, layer hooks, or ghost clipping with book-keeping) is privacy.per_example's, chosen
per scope by measurement (privacy.per_example.choice) or by DPSettings.per_example; every implementation
averages the noise-multiplicity draws inside one example before clipping, so one example's clipped
contribution is <= C whatever K is.

The engine owns the private examples and its noise generator. A method supplies the per-example loss and a
batch function, which receives the step's examples and a generator of its own. Every privatised gradient is
counted in the same call that computes it.

Under torchrun the engine is one of N data-parallel replicas (privacy.distributed): it samples only its shard,
the clipped sums are summed over the world and the noise is drawn once, on rank 0.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from dpbench.privacy.accountant import ACCOUNTANTS, DEFAULT_ACCOUNTANT, calibrate_noise, epsilon_of_history
from dpbench.privacy.audit import AuditSettings, GradientCanaries
from dpbench.privacy.checkpoint import CheckpointMismatchError, CheckpointPlan
from dpbench.privacy.distributed import SINGLE, World
from dpbench.privacy.ledger import PrivacyStage
from dpbench.privacy.per_example import base as clipping
from dpbench.privacy.per_example import build as build_per_example
from dpbench.privacy.per_example.choice import (AUTO, CHOICES, CHUNKINGS, ROWS, examples_per_chunk,
                                                resolve_implementation)
from dpbench.privacy.randomness import engine_randomness
from dpbench.privacy.step_statistics import StepStatistics
from dpbench.seeds import stream_seed

# loss(model_fn, example) -> scalar, where example holds one private example's tensors (no batch dim)
# and model_fn(*inputs) runs the model with the parameters being differentiated.
PerExampleLoss = Callable[[Callable[..., torch.Tensor], dict[str, torch.Tensor]], torch.Tensor]
# make_batch(examples, generator) -> dict of tensors with a leading batch dimension len(examples["y"]).
# `examples` holds the step's private examples: "x" (prepared images) and "y" (labels).
MakeBatch = Callable[[dict[str, torch.Tensor], torch.Generator], dict[str, torch.Tensor]]


from dpbench.privacy.defaults import DEFAULT_PHYSICAL_BATCH  # noqa: E402,F401 - re-exported


@dataclass(frozen=True)
class DPSettings:
    """The DP-SGD hyperparameters a method chooses. ε and δ are not among them: they are the user's."""

    expected_batch_size: int
    steps: int
    max_grad_norm: float
    accountant: str = DEFAULT_ACCOUNTANT
    noise_multiplicity: int = 1  # K draws per example, averaged before clipping
    physical_batch_size: int = DEFAULT_PHYSICAL_BATCH  # per chunk: examples at K = 1, by `chunking` at K > 1
    per_example: str = AUTO  # per-example gradient implementation: "auto" (by the supports() check) or a named one
    chunking: str = ROWS  # what a chunk holds at K > 1 (privacy.per_example.choice); the scope declares it

    def __post_init__(self) -> None:
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got '{self.accountant}'")
        for key in ("expected_batch_size", "steps", "noise_multiplicity", "physical_batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be an int >= 1, got {value!r}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.per_example not in CHOICES:
            raise ValueError(f"per_example must be one of {CHOICES}, got '{self.per_example}'")
        if self.chunking not in CHUNKINGS:
            raise ValueError(f"chunking must be one of {CHUNKINGS}, got '{self.chunking}'")


def add_gaussian_noise(summed: dict[str, torch.Tensor], noise_multiplier: float, max_grad_norm: float,
                       randomness) -> dict[str, torch.Tensor]:
    """Add N(0, (sigma*C)^2) to every coordinate of the summed clipped gradient. `randomness` is the engine's
    noise source (privacy.randomness), or a torch.Generator."""
    std = noise_multiplier * max_grad_norm
    if isinstance(randomness, torch.Generator):
        generator = randomness
        return {name: g + std * torch.randn(g.shape, generator=generator, device=g.device, dtype=g.dtype)
                for name, g in summed.items()}
    return {name: g + std * randomness.normal(g.shape, g.device, g.dtype) for name, g in summed.items()}


class PrivateTrainer:
    """Runs the planned DP-SGD steps on a model's trainable parameters. Built by the harness's privacy books.

    `private_x` are the private images after the method's fixed per-example `prepare` map (e.g. a public
    encoder), `private_y` their labels. `prior` is the history of the run's earlier stages: sigma is calibrated
    so that all stages so far together spend at most `epsilon`.
    """

    def __init__(self, model: nn.Module, loss: PerExampleLoss, make_batch: MakeBatch, settings: DPSettings, *,
                 private_x: torch.Tensor, private_y: torch.Tensor, epsilon: float, delta: float,
                 device: torch.device, seed: int, stage: int = 0, prior=(), budget_share: float = 1.0,
                 rng: str = "seeded", checkpoints: CheckpointPlan | None = None,
                 audit: AuditSettings | None = None, world: World = SINGLE, implementation: str | None = None,
                 self_test=None) -> None:
        if world.is_distributed and (audit is not None or checkpoints is not None):
            raise ValueError("audit canaries and resume checkpoints are single-process only")
        world.copy_leader_model(model)  # every replica starts from rank 0's weights
        self.model, self.device = model, device
        self.__world = world
        self.__shard = world.shard(len(private_y))
        self.__settings = dataclasses.replace(settings)  # the engine's own copy: the method's object may change
        self._make_batch = make_batch
        self.__x, self.__y = private_x.to(device), private_y.to(device)
        self.n_private = len(self.__y)
        self.__private = math.isfinite(epsilon)
        self.delta = delta
        self._prior = list(prior)
        sample_rate = min(1.0, settings.expected_batch_size / self.n_private)
        sigma = calibrate_noise(epsilon, delta, sample_rate, settings.steps, settings.accountant, prior=self._prior) \
            if self.private else 0.0
        # the harness's privacy books pass what the engine's self-test settled (privacy.self_test)
        implementation = implementation or resolve_implementation(settings.per_example, model, loss)
        self.self_test = self_test
        self.__plan = PrivacyStage(noise_multiplier=sigma, sample_rate=sample_rate,
                                 expected_batch_size=settings.expected_batch_size, steps=settings.steps,
                                 planned_steps=settings.steps,
                                 max_grad_norm=settings.max_grad_norm if self.private else None,
                                 noise_multiplicity=settings.noise_multiplicity, budget_share=budget_share,
                                 per_example=implementation)
        self.trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.__examples_per_chunk = examples_per_chunk(settings.chunking, settings.physical_batch_size,
                                                       settings.noise_multiplicity)
        if not self.trainable:
            raise ValueError("the model has no trainable parameters")
        replica = (world.rank, world.size) if world.is_distributed else None
        self.__randomness = engine_randomness(rng, seed, stage, device, replica)  # noise and sampling
        self.stage, self._checkpoints, self.resumed_from_step = stage, checkpoints, 0
        # secure noise cannot be redrawn on resume: count started steps ahead of each draw (privacy.checkpoint)
        self.__write_ahead = checkpoints is not None and rng == "secure"
        self.lost_steps = 0  # steps started before a kill and lost, charged to the ledger on resume (secure rng)
        self.rng = rng
        # the method's own; it decides no privacy-relevant draw, so it stays seeded
        self.batch_generator = torch.Generator(device=device).manual_seed(
            stream_seed(seed, "dp", stage, "batch", *(("replica", *replica) if replica else ())))
        if audit is not None and not self.private:
            raise ValueError("an audit needs a private stage (finite ε): there is no claim to audit")
        # the canaries know the mechanism their stage claims (σ, q, accountant), to test the run against it
        self.canaries = None if audit is None else GradientCanaries(
            audit, sum(p.numel() for p in self.trainable.values()),
            stream_seed(seed, "audit", stage),
            noise_multiplier=sigma, sample_rate=sample_rate, accountant=settings.accountant)
        self.__steps_done = 0
        self.nonfinite_examples = 0  # examples zeroed for a NaN/inf gradient; a count over the whole run
        self.batch_sizes: list[int] = []

        self.__per_example = build_per_example(implementation, model, loss)  # computes each chunk's clipped sum
        self.statistics = StepStatistics(  # the run's training curves (privacy.step_statistics says what is DP)
            loss, planned_steps=settings.steps, noise_std=sigma * settings.max_grad_norm if self.private else 0.0,
            dimension=sum(p.numel() for p in self.trainable.values()), max_grad_norm=self.__plan.max_grad_norm)
        self.__fixed = self._privacy_state()

    @property
    def settings(self) -> DPSettings:
        """A copy of the engine's settings: changing it changes nothing."""
        return dataclasses.replace(self.__settings)

    @property
    def plan(self) -> PrivacyStage:
        """A copy of the calibrated stage (read-only: sigma and q are the harness's, not the method's)."""
        return dataclasses.replace(self.__plan)

    @property
    def private(self) -> bool:
        """Whether the engine clips and adds noise: fixed by the run's ε when the engine is made."""
        return self.__private

    @property
    def world(self) -> World:
        return self.__world

    @property
    def per_example(self):
        """The per-example gradient implementation computing each chunk's clipped sum."""
        return self.__per_example

    def _privacy_state(self) -> tuple:
        return (self.__private, id(self.__world), id(self.__per_example), dataclasses.astuple(self.__plan),
                dataclasses.astuple(self.__settings), self.__examples_per_chunk, len(self.__y))

    def _check_privacy_state(self) -> None:
        """Every step: the flags, plan, settings, world and implementation the engine was made with, unchanged."""
        if self._privacy_state() != self.__fixed:
            raise RuntimeError("the DP engine's privacy state (private flag, plan, settings, world or per-example "
                               "implementation) changed after it was made; the run cannot be accounted for")

    @property
    def steps_done(self) -> int:
        return self.__steps_done

    @property
    def noise_multiplier(self) -> float:
        return self.plan.noise_multiplier

    def spent(self) -> PrivacyStage:
        """The stage as actually run so far (equal to the plan once every step is taken)."""
        return dataclasses.replace(self.__plan, steps=self.__steps_done)

    def _sample_indices(self) -> torch.Tensor:
        """Poisson sampling: each private example of this replica's shard (the whole split in a single process)
        joins the batch independently with the sample rate. An audit's member canaries are examples of the split
        too, drawn in the same call at the same rate: canary j is index n_private + j."""
        members = self.canaries.members() if self.canaries is not None else self.__shard[:0]
        mask = self.__randomness.uniform(len(self.__shard) + len(members)) < self.__plan.sample_rate
        real = len(self.__shard)
        return torch.cat([self.__shard[mask[:real]], self.n_private + members.to(self.__shard)[mask[real:]]])

    def _privatised_gradient(self) -> dict[str, torch.Tensor]:
        """One step's released gradient: sum of clipped per-example grads + noise, over the expected batch size.
        The step is counted here, before anything is computed, so no released gradient goes uncounted."""
        self._check_privacy_state()
        if self.__steps_done >= self.__plan.planned_steps:
            raise RuntimeError("the planned number of DP steps is spent; more steps would exceed the ledger")
        self.__steps_done += 1
        if self.__write_ahead:
            self._checkpoints.record_started(self.stage, self.__steps_done)
        indices = self._sample_indices().to(self.__y.device)
        sampled_canaries = indices[indices >= self.n_private] - self.n_private
        indices = indices[indices < self.n_private]
        total, nonfinite = self._clipped_sum(indices)
        batch_size, nonfinite = self.world.sum_counts(len(indices), nonfinite)
        self.batch_sizes.append(batch_size)
        self.nonfinite_examples += nonfinite
        total = self.world.sum(total)
        if self.canaries is not None:
            data_sum = torch.cat([g.reshape(-1) for g in total.values()])[self.canaries.coordinates]
            total = self._add_canaries(total, sampled_canaries)
        if self.private:
            summed = total
            total = self.world.drawn_once(lambda: add_gaussian_noise(summed, self.__plan.noise_multiplier,
                                                                     self.__plan.max_grad_norm, self.__randomness),
                                          like=summed)
        else:
            total = self.world.from_leader(total)  # every replica applies rank 0's sum, bit for bit
        if self.canaries is not None:
            # The auditor reads each canary's coordinate of the released sum, less the real examples' part: DP's
            # adversary may know every other record, so removing their (known) contribution is a fair attack,
            # and it leaves exactly the canary's clipped gradient plus the noise.
            released = torch.cat([g.reshape(-1) for g in total.values()])[self.canaries.coordinates]
            self.canaries.observe((released - data_sum).double().cpu())
        self.statistics.step(self.__steps_done, self.model, total)
        if self.private:
            denominator = self.__plan.sample_rate * self.n_private
        else:
            denominator = max(batch_size, 1)
        return {n: g / denominator for n, g in total.items()}

    def _clipped_sum(self, indices: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        """The sum of the clipped per-example gradients of the examples `indices` (plain gradients when not
        private), and how many of them were zeroed for a non-finite gradient."""
        total = {n: torch.zeros_like(p) for n, p in self.trainable.items()}
        nonfinite = 0
        chunk = self.__examples_per_chunk
        for start in range(0, len(indices), chunk):
            idx = indices[start:start + chunk]
            batch = self._make_batch({"x": self.__x[idx], "y": self.__y[idx]}, self.batch_generator)
            result = self.__per_example.clipped_sum({k: v.to(self.device) for k, v in batch.items()},
                                                  self.__plan.max_grad_norm if self.private else None)
            nonfinite += int(result.nonfinite.sum())
            self.statistics.chunk(batch, result.norms)
            for n in total:
                total[n] += result.summed[n]
        return total, nonfinite

    def _add_canaries(self, total: dict[str, torch.Tensor], sampled: torch.Tensor) -> dict[str, torch.Tensor]:
        """The sampled canaries' clipped gradients added to the step's clipped sum. Canary j's per-example gradient
        is `scale` * C on its own coordinate; its weight comes from the clip arithmetic every per-example
        implementation uses (per_example.base.example_weights), so a clip that is weakened or off there is
        weakened or off for the canaries too."""
        if not len(sampled):
            return total
        clip = self.__plan.max_grad_norm
        norms = torch.full((len(sampled),), self.canaries.settings.scale * clip, dtype=torch.float64)
        weights, _, _ = clipping.example_weights(norms.square(), clip)
        values = norms * weights
        flat = torch.cat([g.reshape(-1) for g in total.values()])
        coordinates = self.canaries.coordinates[sampled.cpu()].to(flat.device)
        flat = flat.index_add(0, coordinates, values.to(flat.device, flat.dtype))
        out, offset = {}, 0
        for name, g in total.items():
            out[name] = flat[offset:offset + g.numel()].view_as(g)
            offset += g.numel()
        return out

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        gradient = self._privatised_gradient()
        for name, param in self.trainable.items():
            param.grad = gradient[name]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def epsilon_so_far(self) -> float:
        """ε of the run's earlier stages plus this one's steps so far."""
        if not self.private:
            return math.inf
        history = [*self._prior, (self.__plan.noise_multiplier, self.__plan.sample_rate, self.__steps_done)]
        return epsilon_of_history(history, self.delta, self.settings.accountant)

    def run(self, optimizer: torch.optim.Optimizer, progress=None, description: str = "DP fine-tune (private)") -> None:
        """Every remaining planned step, with a progress bar that shows ε spent so far. With a checkpoint plan, the
        stage resumes from its checkpoint (when the run resumes) and checkpoints every N steps and at its end."""
        total = self.__plan.planned_steps
        self._restore(optimizer)
        self._charge_lost_steps()
        task = progress.task(description, total=total) if progress else None
        if task and self.__steps_done:
            task.advance(self.__steps_done)
        report_every = max(1, total // 20)
        while self.__steps_done < total:
            self.step(optimizer)
            if self._checkpoints and (self.__steps_done % self._checkpoints.every == 0 or self.__steps_done == total):
                self._checkpoints.save(self.stage, self._state(optimizer))
            if task:
                report = self.__steps_done % report_every == 0 or self.__steps_done == total
                task.advance(1, **({"eps": self.epsilon_so_far()} if report else {}))
        if task:
            task.close()
        self.world.check_identical(self.trainable)

    def _charge_lost_steps(self) -> None:
        """Under the secure rng, every step started after the checkpoint (or before the first one) counts as taken:
        its noise cannot be drawn again, and something of it may have got out."""
        started = self._checkpoints.steps_started(self.stage) if self.__write_ahead else None
        if started is not None and started > self.__steps_done:
            self.lost_steps = min(started, self.__plan.planned_steps) - self.__steps_done
            self.__steps_done += self.lost_steps
            warnings.warn(f"DP stage {self.stage} resumes under the secure rng: {self.lost_steps} step(s) started after "
                          "its last checkpoint cannot be redrawn, so they are charged to the ledger as taken and the "
                          "stage continues with the planned steps left", stacklevel=3)

    def _plan_key(self) -> dict:
        return dataclasses.asdict(self.__plan)

    def _state(self, optimizer: torch.optim.Optimizer) -> dict:
        return {"plan": self._plan_key(), "steps_done": self.__steps_done, "batch_sizes": list(self.batch_sizes),
                "nonfinite_examples": self.nonfinite_examples, "rng": self.rng,
                "params": {n: p.detach().cpu().clone() for n, p in self.trainable.items()},
                "optimizer": optimizer.state_dict(), "randomness": self.__randomness.state(),
                "batch_rng": self.batch_generator.get_state(), "torch_rng": torch.get_rng_state(),
                "canaries": self.canaries.state() if self.canaries is not None else None}

    def _restore(self, optimizer: torch.optim.Optimizer) -> None:
        state = self._checkpoints.load(self.stage, self._plan_key()) if self._checkpoints else None
        if state is None:
            return
        if state["rng"] != self.rng:
            raise CheckpointMismatchError(f"the checkpoint drew its noise with rng '{state['rng']}', this run asks "
                                          f"for '{self.rng}'")
        with torch.no_grad():
            for name, param in self.trainable.items():
                param.copy_(state["params"][name].to(param.device))
        optimizer.load_state_dict(state["optimizer"])
        self.__randomness.set_state(state["randomness"])
        self.batch_generator.set_state(state["batch_rng"])
        torch.set_rng_state(state["torch_rng"])
        self.__steps_done = self.resumed_from_step = int(state["steps_done"])
        self.batch_sizes = list(state["batch_sizes"])
        self.nonfinite_examples = int(state["nonfinite_examples"])
        if self.canaries is not None:
            self.canaries.load_state(state["canaries"])

