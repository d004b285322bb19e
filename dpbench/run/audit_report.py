"""What `dpbench audit` reports: the verdict (is the empirical lower bound above the claimed ε?) and its text."""
from __future__ import annotations

import math
from pathlib import Path

from dpbench.privacy.audit import AuditSettings
from dpbench.run.request import RunInputError


class AuditInputError(RunInputError):
    """An audit that cannot be asked for: bad input, found before anything is written (CLI exit 2)."""


def audit_settings(epsilon: float, canaries: int, guesses: int) -> AuditSettings:
    """The settings of an audit of a claimed ε with `guesses` guesses on each side; bad input raises
    AuditInputError."""
    if not math.isfinite(epsilon):
        raise AuditInputError("--eps must be finite: there is nothing to audit in a non-private run")
    try:
        return AuditSettings(canaries=canaries, guesses_in=guesses, guesses_out=guesses)
    except ValueError as exc:
        raise AuditInputError(str(exc)) from None


def exceeds_claim(result: dict, epsilon: float) -> bool:
    """The verdict: the training leaks more than it claims (`dpbench audit` exits 1)."""
    return result["epsilon_lower_bound"] > epsilon


def audit_summary(method: str, pair: str, epsilon: float, result: dict, record_path: Path) -> str:
    return (f"{method} on {pair}: claimed ε = {epsilon:g}, empirical lower bound ε ≥ "
            f"{result['epsilon_lower_bound']:.3f} (95%), {result['correct_guesses']}/{result['guesses']} "
            f"guesses right with {result['canaries']} canaries; the largest bound this audit can give is "
            f"{result['max_lower_bound']:.2f}\nrecord: {record_path}")
