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
    """The verdict (`dpbench audit` exits 1): the training leaks more than it claims. The claim is the audited
    stage's own ε (its σ, q and steps by its accountant), at most the run's target `epsilon`: the canaries are in
    that stage only."""
    if result["epsilon_claimed"] > epsilon * (1 + 1e-6):
        raise ValueError(f"the audited stage claims ε = {result['epsilon_claimed']:.4g}, more than the run's target "
                         f"{epsilon:g}: the ledger and the audit disagree")
    return result["epsilon_lower_bound"] > result["epsilon_claimed"]


def audit_summary(method: str, pair: str, epsilon: float, result: dict, record_path: Path) -> str:
    """The audit in words: the stage's claim, both analyses' bounds, the guesses behind the larger one, and the
    cap."""
    verdict = "LEAKS MORE THAN IT CLAIMS" if exceeds_claim(result, epsilon) else "consistent with its claim"
    lines = [f"{method} on {pair}: the audited DP stage claims ε = {result['epsilon_claimed']:.3f} (run target "
             f"{epsilon:g}, δ = {result['delta']:g}); {verdict}",
             f"  empirical lower bounds at {result['confidence']:.0%} over all four tests: "
             f"ε ≥ {result['epsilon_lower_bound_fdp']:.3f} (f-DP, Mahloujifar et al. 2025), "
             f"ε ≥ {result['epsilon_lower_bound_steinke']:.3f} (Steinke et al. 2023)"]
    for name, statistic in result["statistics"].items():
        lines.append(f"  {name}: {statistic['correct_guesses']}/{statistic['guesses']} right, f-DP "
                     f"{statistic['fdp']:.3f}, Steinke {statistic['steinke']:.3f}")
    lines.append(f"  {result['canaries']} canaries ({result['canaries_in']} in), {result['steps']} steps; the "
                 f"largest bound this audit can give is {result['max_lower_bound']:.2f}")
    lines.append(f"record: {record_path}")
    return "\n".join(lines)
