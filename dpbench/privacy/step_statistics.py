"""Per-step statistics of one DP stage, for the run's training curves (run/curves.py writes them).

Two kinds, kept apart by their names:

- **released** (`released_grad_norm`, `noise_to_signal`): computed only from the noised gradient sum DP-SGD
  releases and from the plan's public values (σ, C, the trainable dimension). Post-processing: covered by ε.
- **outside DP** (`loss_outside_dp`, `clip_fraction_outside_dp`): computed from the private batch itself (its loss,
  how many of its examples had their gradient clipped). They are NOT covered by ε: diagnostics for the person who
  runs the benchmark, never to be released with the model.

`noise_to_signal` is σC·√d over an estimate of the clipped sum's norm taken from the released sum s̃ = s + n alone:
E‖s̃‖² = ‖s‖² + σ²C²d, so ‖s‖² ≈ ‖s̃‖² − σ²C²d, averaged over a row's steps and floored at 0 (then the ratio is inf:
the signal is below what the released gradient can show). Its resolution is about σC·(2d)^¼ in ‖s‖.

Under torchrun the released columns are the world's (the summed, noised gradient); the two private ones are rank 0's
shard's. A resumed run's rows start at the step it resumed from (they are not checkpointed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dpbench.privacy.per_example.batched import batched_form

ROW_BUDGET = 100  # rows per stage at most: a stage of more planned steps gets one row per ceil(steps / 100)
LOSS_EXAMPLES = 16  # the loss is the mean over at most this many examples of the row's last step (cheap)


@dataclass(frozen=True)
class CurveRow:
    step: int
    loss_outside_dp: float
    clip_fraction_outside_dp: float
    released_grad_norm: float
    noise_to_signal: float


class StepStatistics:
    """Observes each step of one engine; keeps one CurveRow per `stride` steps (and the last planned step)."""

    def __init__(self, loss, *, planned_steps: int, noise_std: float, dimension: int,
                 max_grad_norm: float | None) -> None:
        self.loss, self.planned_steps = loss, planned_steps
        self.noise_std, self.dimension, self.max_grad_norm = noise_std, dimension, max_grad_norm
        self.stride = max(1, math.ceil(planned_steps / ROW_BUDGET))
        self.rows: list[CurveRow] = []
        self._reset()

    def _reset(self) -> None:
        self._clipped = self._examples = self._steps = 0
        self._released_sq = self._signal_sq = 0.0
        self._first_chunk: dict[str, torch.Tensor] | None = None

    def chunk(self, batch: dict[str, torch.Tensor], norms: torch.Tensor) -> None:
        """One physical chunk of the current step: its batch (the first is kept for the loss) and the per-example
        gradient norms before clipping."""
        if self._first_chunk is None:
            self._first_chunk = {k: v[:LOSS_EXAMPLES] for k, v in batch.items()}
        if self.max_grad_norm is not None:
            self._clipped += int((norms > self.max_grad_norm).sum())
        self._examples += len(norms)

    def step(self, step: int, model: torch.nn.Module, released_sum: dict[str, torch.Tensor]) -> None:
        """The step's released (noised, not yet averaged) gradient sum; closes a row every `stride` steps."""
        released_sq = float(sum(g.double().square().sum() for g in released_sum.values()))
        self._released_sq += released_sq
        self._signal_sq += released_sq - self.noise_std ** 2 * self.dimension
        self._steps += 1
        if step % self.stride == 0 or step == self.planned_steps:
            self.rows.append(self._row(step, model))
            self._reset()

    def _row(self, step: int, model: torch.nn.Module) -> CurveRow:
        signal = math.sqrt(max(self._signal_sq / self._steps, 0.0))
        noise = self.noise_std * math.sqrt(self.dimension)
        return CurveRow(
            step=step,
            loss_outside_dp=self._batch_loss(model),
            clip_fraction_outside_dp=self._clipped / self._examples if self._examples else math.nan,
            released_grad_norm=math.sqrt(self._released_sq / self._steps),
            noise_to_signal=(noise / signal if signal > 0 else math.inf) if noise > 0 else 0.0,
        )

    def _batch_loss(self, model: torch.nn.Module) -> float:
        """Mean loss of the step's first examples, in eval mode and with the random streams left as they were, so
        that the run trains exactly as it would without curves."""
        batch = self._first_chunk
        if not batch or not len(next(iter(batch.values()))):
            return math.nan
        was_training = model.training
        devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model.eval()
            try:
                batched = batched_form(self.loss)
                if batched is not None:
                    losses = batched(model, batch)
                else:
                    n = len(next(iter(batch.values())))
                    losses = torch.stack([self.loss(model, {k: v[i] for k, v in batch.items()}) for i in range(n)])
            finally:
                model.train(was_training)
        return float(losses.float().mean())
