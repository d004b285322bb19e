"""The privacy ledger of one run: every DP stage the harness's engines ran, composed under one accountant."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class PrivacyStage:
    """What one engine spent: `steps` Poisson-sampled steps of the Gaussian mechanism.

    noise_multiplicity K is recorded for the reader; it does not enter accounting, because the engine
    averages the K draws inside each example's gradient before clipping (sensitivity stays C).
    A non-private stage (the run's target is ε = ∞) has noise_multiplier 0 and max_grad_norm None.
    """

    noise_multiplier: float
    sample_rate: float
    expected_batch_size: int
    steps: int
    planned_steps: int
    max_grad_norm: float | None
    noise_multiplicity: int = 1
    budget_share: float = 1.0
    per_example: str = "vmap"  # how the per-example clipped sum was computed (privacy.per_example); not accounted

    def history_entry(self) -> tuple[float, float, int]:
        """The (sigma, q, steps) triple Opacus's accountants compose."""
        return (self.noise_multiplier, self.sample_rate, self.steps)


@dataclass(frozen=True)
class PrivacyLedger:
    """Everything needed to recompute the (ε, δ) a run spent, kept by the harness, never by a method."""

    accountant: str
    delta: float
    epsilon_target: float
    n_private: int
    stages: tuple[PrivacyStage, ...] = field(default_factory=tuple)

    @property
    def is_private(self) -> bool:
        return math.isfinite(self.epsilon_target)

    @property
    def steps(self) -> int:
        return sum(stage.steps for stage in self.stages)

    def history(self) -> list[tuple[float, float, int]]:
        return [stage.history_entry() for stage in self.stages if stage.steps > 0]

    def to_dict(self) -> dict:
        return {"accountant": self.accountant, "delta": self.delta, "epsilon_target": self.epsilon_target,
                "n_private": self.n_private, "steps": self.steps, "stages": [asdict(s) for s in self.stages]}

    @classmethod
    def from_dict(cls, data: dict) -> "PrivacyLedger":
        stages = tuple(PrivacyStage(**stage) for stage in data.get("stages", []))
        return cls(accountant=data["accountant"], delta=float(data["delta"]),
                   epsilon_target=float(data["epsilon_target"]), n_private=data["n_private"], stages=stages)
