"""The privacy ledger a method hands back, and the harness's independent re-check of it."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PrivacyLedger:
    """Everything needed to recompute the (epsilon, delta) a DP-SGD run spent.

    noise_multiplicity K is recorded for the reader; it does not enter accounting, because the engine
    averages the K draws inside each example's gradient before clipping (sensitivity stays C).
    A non-private run (epsilon_target = inf) has noise_multiplier 0 and max_grad_norm None.
    """

    accountant: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float | None
    delta: float
    noise_multiplicity: int = 1
    epsilon_target: float = math.inf

    @property
    def is_private(self) -> bool:
        return math.isfinite(self.epsilon_target)

    def to_dict(self) -> dict:
        return asdict(self)
