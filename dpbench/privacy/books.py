"""The run's privacy books: the harness hands out every DP engine from here and composes what they spent."""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
from torch import nn

from dpbench.data.types import ImageSet
from dpbench.privacy.distributed import SINGLE, World
from dpbench.privacy.engine import DPSettings, MakeBatch, PerExampleLoss, PrivateTrainer
from dpbench.privacy.ledger import PrivacyLedger
from dpbench.privacy.per_example.choice import resolve_implementation
from dpbench.privacy.self_test import self_test

SHARE_SLACK = 1e-9


class PrivacyBooks:
    """Keeps the private training split and every engine opened on it, for one run at (ε, δ)."""

    def __init__(self, private_train: ImageSet, *, epsilon: float, delta: float, device: torch.device, seed: int,
                 rng: str = "seeded", checkpoints=None, audit=None, world: World = SINGLE,
                 max_steps: int | None = None, max_batch: int | None = None) -> None:
        self.__private = private_train
        self.max_steps = max_steps  # the run's --max-steps: every engine plans (and calibrates sigma for) at most this
        self.max_batch = max_batch  # the run's --max-batch: every engine's expected batch (its sample rate) at most this
        self.world = world  # a privacy.distributed.World: this process's rank among data-parallel replicas
        self.audit = audit  # a privacy.audit.AuditSettings: canaries go into the run's first DP stage
        self.checkpoints = checkpoints  # a privacy.checkpoint.CheckpointPlan, or None
        self.epsilon, self.delta, self.device, self.seed, self.rng = epsilon, delta, device, seed, rng
        self.trainers: list[PrivateTrainer] = []
        self.share_used = 0.0

    @property
    def n_private(self) -> int:
        return len(self.__private)

    def open(self, model: nn.Module, loss: PerExampleLoss, make_batch: MakeBatch, settings: DPSettings, *,
             prepare: Callable[[torch.Tensor], torch.Tensor] | None = None, budget_share: float = 1.0,
             num_classes: int | None = None) -> PrivateTrainer:
        """A new engine whose sigma is calibrated so that every stage so far spends <= share_so_far * ε.

        Before it is made, a private engine's self-test (privacy.self_test) checks the method's prepare, make_batch,
        loss and model on synthetic inputs of the private images' shape (labels in [0, num_classes)), and picks vmap
        where ghost/hooks would be wrong; it refuses what no implementation makes exact."""
        if self.epsilon == 0:
            raise PermissionError("this run is at ε = 0: it may take no private step")
        if not 0 < budget_share <= 1:
            raise ValueError(f"budget_share must be in (0, 1], got {budget_share}")
        if self.share_used + budget_share > 1 + SHARE_SLACK:
            raise ValueError(f"budget shares add up to {self.share_used + budget_share:.4g} > 1: the stages would "
                             "overspend the run's ε")
        if self.trainers and settings.accountant != self.trainers[0].settings.accountant:
            raise ValueError(f"every DP stage of a run uses one accountant; the first used "
                             f"'{self.trainers[0].settings.accountant}', this one asks for '{settings.accountant}'")
        if self.max_steps is not None and settings.steps > self.max_steps:
            settings = dataclasses.replace(settings, steps=self.max_steps)
        if self.max_batch is not None and settings.expected_batch_size > self.max_batch:
            settings = dataclasses.replace(settings, expected_batch_size=self.max_batch)
        images = self.__private.images
        settings = dataclasses.replace(settings)  # the method's object may change after this; the engine's may not
        implementation, report = resolve_implementation(settings.per_example, model, loss), None
        if math.isfinite(self.epsilon):
            report = self_test(model, loss, make_batch, prepare, implementation, image_shape=tuple(images.shape[1:]),
                               num_classes=num_classes, device=self.device)
            implementation = report.implementation
        private_x = prepare(images) if prepare is not None else images
        if not torch.is_tensor(private_x) or len(private_x) != len(images):
            raise ValueError("prepare must map the private images to a tensor with one row per example")
        prior = [t.plan.history_entry() for t in self.trainers]  # planned, so later stages never borrow from earlier
        cumulative = min(1.0, self.share_used + budget_share)
        target = self.epsilon * cumulative if math.isfinite(self.epsilon) else math.inf
        trainer = PrivateTrainer(model, loss, make_batch, settings, private_x=private_x,
                                 private_y=self.__private.labels, epsilon=target, delta=self.delta,
                                 device=self.device, seed=self.seed, stage=len(self.trainers), prior=prior, rng=self.rng,
                                 checkpoints=self.checkpoints, audit=self.audit if not self.trainers else None,
                                 budget_share=budget_share, world=self.world, implementation=implementation,
                                 self_test=report)
        self.share_used += budget_share
        self.trainers.append(trainer)
        return trainer

    @property
    def nonfinite_examples(self) -> int:
        """Per-example gradients zeroed (NaN/inf) over every engine of the run."""
        return sum(t.nonfinite_examples for t in self.trainers)

    def ledger(self, accountant: str) -> PrivacyLedger:
        """What the run spent: every engine's stage as actually run, composed under one accountant."""
        if self.trainers:
            accountant = self.trainers[0].settings.accountant
        return PrivacyLedger(accountant=accountant, delta=self.delta, epsilon_target=self.epsilon,
                             n_private=self.n_private, stages=tuple(t.spent() for t in self.trainers))
