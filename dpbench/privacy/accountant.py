"""Noise calibration and the harness's independent ε re-check, both through Opacus's accountants."""
from __future__ import annotations

import math
import warnings
from typing import Sequence

from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier

from dpbench.privacy.ledger import PrivacyLedger

from dpbench.privacy.defaults import ACCOUNTANTS, DEFAULT_ACCOUNTANT  # noqa: F401 - re-exported
EPSILON_TOLERANCE = 0.01
History = Sequence[tuple[float, float, int]]


class PrivacyBudgetError(ValueError):
    """A ledger whose recomputed ε exceeds its target, or a budget that cannot be met."""


class LedgerError(PrivacyBudgetError):
    """A ledger that is malformed or disagrees with what the harness knows (n, δ, target, accountant)."""


def _check_accountant(accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise LedgerError(f"unknown accountant '{accountant}', expected one of {ACCOUNTANTS}")


def epsilon_of_history(history: History, delta: float, accountant: str) -> float:
    """ε after composing every (sigma, q, steps) entry of `history` under one accountant."""
    _check_accountant(accountant)
    history = [entry for entry in history if entry[2] > 0]
    if not history:
        return 0.0
    if any(sigma <= 0 for sigma, _, _ in history):
        return math.inf
    acc = create_accountant(mechanism=accountant)
    acc.history = list(history)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        return float(acc.get_epsilon(delta=delta))


def epsilon_spent(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str) -> float:
    """ε after `steps` steps of the subsampled Gaussian mechanism."""
    return epsilon_of_history([(noise_multiplier, sample_rate, steps)], delta, accountant)


def calibrate_noise(epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str = DEFAULT_ACCOUNTANT,
                    prior: History = ()) -> float:
    """The smallest sigma (within EPSILON_TOLERANCE in ε) for which `steps` Poisson-sampled steps, composed after the
    `prior` history, spend <= epsilon in all."""
    _check_accountant(accountant)
    if not math.isfinite(epsilon):
        return 0.0
    if not prior:
        with warnings.catch_warnings():  # the search's large trial sigmas trip RDP's "largest alpha" warning
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
            try:
                return get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                            steps=steps, accountant=accountant, epsilon_tolerance=EPSILON_TOLERANCE)
            except ValueError as exc:  # Opacus: "The privacy budget is too low."
                raise PrivacyBudgetError(f"no noise level meets ε = {epsilon:g} at δ = {delta:g} with the "
                                         f"'{accountant}' accountant ({exc})") from exc
    # Opacus's search covers one (q, steps) pair; with earlier stages the same bisection runs over the composition.
    def spent(sigma: float) -> float:
        return epsilon_of_history([*prior, (sigma, sample_rate, steps)], delta, accountant)

    if epsilon_of_history(prior, delta, accountant) >= epsilon:
        raise PrivacyBudgetError(f"the earlier DP stages already spend the budget share ε = {epsilon:.4g}")
    low, high = 0.0, 10.0
    while spent(high) > epsilon:
        low, high = high, 2 * high
        if high > 1e6:
            raise PrivacyBudgetError(f"no noise level meets ε = {epsilon} for these stages")
    while spent(high) < epsilon - EPSILON_TOLERANCE:
        mid = (low + high) / 2
        if spent(mid) <= epsilon:
            high = mid
        else:
            low = mid
        if high - low < 1e-6:
            break
    return high


def validate_ledger(ledger: PrivacyLedger, *, epsilon_target: float, delta: float, n_private: int) -> float:
    """Check the ledger against what the harness itself knows, then recompute ε; raise unless it is within target.

    The ledger's own claims (sample rate, target, δ) are never trusted: each is compared with the harness's.
    """
    _check_accountant(ledger.accountant)
    if not _same(ledger.epsilon_target, epsilon_target):
        raise LedgerError(f"ledger target ε = {ledger.epsilon_target} differs from the requested ε = {epsilon_target}")
    if ledger.delta != delta:
        raise LedgerError(f"ledger delta {ledger.delta} differs from the requested delta {delta}")
    if ledger.n_private != n_private:
        raise LedgerError(f"ledger n_private = {ledger.n_private} differs from the private split's size {n_private}")
    for i, stage in enumerate(ledger.stages):
        _validate_stage(i, stage, n_private, ledger.is_private)
    if epsilon_target == 0 and ledger.steps > 0:
        raise PrivacyBudgetError("a run at ε = 0 must take no private step")
    if not ledger.is_private:
        return math.inf
    epsilon = epsilon_of_history(ledger.history(), delta, ledger.accountant)
    if not epsilon <= epsilon_target:
        raise PrivacyBudgetError(f"recomputed epsilon {epsilon:.4f} exceeds the target {epsilon_target}")
    return epsilon


def _validate_stage(i: int, stage, n_private: int, private: bool) -> None:
    name = f"ledger stage {i}"
    for key in ("steps", "planned_steps", "expected_batch_size", "noise_multiplicity"):
        value = getattr(stage, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise LedgerError(f"{name}: {key} must be an int >= 0, got {value!r}")
    if stage.steps > stage.planned_steps:
        raise LedgerError(f"{name}: {stage.steps} steps taken, more than the {stage.planned_steps} planned")
    if not 0 < stage.sample_rate <= 1:
        raise LedgerError(f"{name}: sample rate q must be in (0, 1], got {stage.sample_rate}")
    expected_q = min(1.0, stage.expected_batch_size / n_private)
    if not math.isclose(stage.sample_rate, expected_q, rel_tol=1e-9):
        raise LedgerError(f"{name}: sample rate {stage.sample_rate} is not the harness's "
                          f"{stage.expected_batch_size}/{n_private} = {expected_q:.6g}")
    if private:
        if not stage.noise_multiplier > 0:
            raise LedgerError(f"{name}: a private stage needs sigma > 0, got {stage.noise_multiplier}")
        if stage.max_grad_norm is None or not stage.max_grad_norm > 0:
            raise LedgerError(f"{name}: a private stage needs a positive clip norm, got {stage.max_grad_norm}")
        if stage.noise_multiplicity < 1:
            raise LedgerError(f"{name}: noise multiplicity must be >= 1, got {stage.noise_multiplicity}")


def _same(a: float, b: float) -> bool:
    return (math.isinf(a) and math.isinf(b) and (a > 0) == (b > 0)) or a == b
