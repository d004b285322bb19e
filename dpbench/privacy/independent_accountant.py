"""A second, independent ε for a ledger: Google's dp-accounting beside Opacus.

The harness calibrates and validates with Opacus (dpbench.privacy.accountant). A re-check through the same
code would repeat any of its mistakes, so each record's ε is also composed here with dp-accounting, whose
RDP and PLD accountants share no code with Opacus's:

- ledger accountant "rdp": dp_accounting.rdp.RdpAccountant over the RDP orders of Opacus's default grid and
  dp-accounting's own default grid up to the same largest order (63). Orders beyond Opacus's largest would give
  dp-accounting a tighter bound whenever Opacus's optimum sits on its grid's edge: that is a difference of grids,
  not of accounting, so the grid stops where Opacus's does.
  dp-accounting 0.6.0 computes the RDP of fractional orders as a sum of |binomial coefficient| terms, an upper
  bound that is looser than Opacus's exact series (integer orders agree to ~1e-14): where the best order is a
  fractional one below ~3, i.e. ε above ~12 (13.3 measured 1.01%), dp-accounting's ε is higher than Opacus's by more than 1% and the check
  refuses the ledger. Every ε the benchmark targets (<= 10) lies well inside the agreement (< 0.5%).
- ledger accountant "prv": dp_accounting.pld.PLDAccountant (privacy loss distributions, pessimistic estimate) with
  a value discretization interval of PLD_DISCRETIZATION. Opacus's PRV accountant returns its estimate plus its
  declared error eps_error = OPACUS_PRV_EPS_ERROR (an absolute 0.01, which alone is 1% at ε = 1); that declared
  margin is taken off before the two are compared (they then agree to ~0.01%).

Each stage is `steps` Poisson-sampled (rate q) steps of the Gaussian mechanism with noise multiplier σ; stages
compose. The noise multiplicity K does not enter, as in Opacus's accounting: the K draws are averaged inside one
example's gradient before clipping. A run that is not private (target ε = ∞) or has a stage with σ = 0 spends
ε = ∞, and one with no step spends 0, exactly as validate_ledger and epsilon_of_history say.
"""
from __future__ import annotations

import functools
import logging
import math
from contextlib import contextmanager
from typing import Sequence

from opacus.accountants import RDPAccountant

from dpbench.privacy.accountant import PrivacyBudgetError
from dpbench.privacy.ledger import PrivacyLedger

AGREEMENT_TOLERANCE = 0.01  # largest relative difference |ε_dp-accounting - ε_Opacus| / ε_Opacus allowed
OPACUS_PRV_EPS_ERROR = 0.01  # opacus PRVAccountant.get_epsilon's default eps_error, added to the ε it returns
# value_discretization_interval of the PLD accountant ("prv" ledgers): within 0.01% of 1e-4's ε, 3x faster
PLD_DISCRETIZATION = 3e-4

# Only Opacus's grid of orders is shared (so that both search the same orders), none of its arithmetic.
OPACUS_DEFAULT_ALPHAS = tuple(RDPAccountant.DEFAULT_ALPHAS)
@functools.lru_cache(maxsize=1)
def rdp_orders() -> tuple[float, ...]:
    from dp_accounting.rdp.rdp_privacy_accountant import DEFAULT_RDP_ORDERS

    return tuple(sorted(set(OPACUS_DEFAULT_ALPHAS)
                        | {float(a) for a in DEFAULT_RDP_ORDERS if a <= max(OPACUS_DEFAULT_ALPHAS)}))

History = Sequence[tuple[float, float, int]]


class AccountantDisagreementError(PrivacyBudgetError):
    """Opacus and dp-accounting give the same ledger ε's more than AGREEMENT_TOLERANCE apart."""

    def __init__(self, opacus_epsilon: float, independent_epsilon: float, accountant: str):
        self.opacus_epsilon, self.independent_epsilon, self.accountant = opacus_epsilon, independent_epsilon, accountant
        difference = relative_difference(comparable_opacus_epsilon(opacus_epsilon, accountant), independent_epsilon)
        against = " against Opacus's estimate (its ε less eps_error)" if accountant == "prv" else ""
        super().__init__(f"the accountants disagree on the '{accountant}' ledger: Opacus gives ε = "
                         f"{opacus_epsilon:.6g}, dp-accounting gives ε = {independent_epsilon:.6g} (relative "
                         f"difference {difference:.3%}{against}, more than the {AGREEMENT_TOLERANCE:.0%} allowed)"
                         + ("; above ε ≈ 12 dp-accounting's RDP bound at fractional orders is looser than Opacus's "
                            "exact one: run with --set accountant=prv, whose two accountants agree there"
                            if accountant == "rdp" and independent_epsilon > opacus_epsilon else ""))


def _load_dp_accounting():
    """dp-accounting, imported on first use. It imports absl, whose logging handler keeps the sys.stderr of the
    moment it was made; where that stream is later swapped and closed (pytest's capture, click's CliRunner) the
    process dies at its next log line ("lost sys.stderr"). The handler is pointed at the process's own stderr."""
    import sys

    import dp_accounting
    from absl import logging as absl_logging

    absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__
    return dp_accounting


def _event(history: History):
    dp_accounting = _load_dp_accounting()

    return dp_accounting.ComposedDpEvent([
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(float(q), dp_accounting.GaussianDpEvent(float(sigma))), int(steps))
        for sigma, q, steps in history])


def epsilon_of_history(history: History, delta: float, accountant: str) -> float:
    """ε after composing every (sigma, q, steps) entry of `history`, with dp-accounting's counterpart of the
    ledger's Opacus accountant ("rdp": RDP; "prv": PLD)."""
    if accountant not in ("rdp", "prv"):
        raise ValueError(f"unknown accountant '{accountant}', expected 'rdp' or 'prv'")
    history = [entry for entry in history if entry[2] > 0]
    if not history:
        return 0.0
    if any(sigma <= 0 for sigma, _, _ in history):
        return math.inf
    # dp-accounting (and the absl it imports) loads only when a ledger is checked
    _load_dp_accounting()
    from dp_accounting.pld import PLDAccountant
    from dp_accounting.rdp import RdpAccountant

    acc = RdpAccountant(orders=rdp_orders()) if accountant == "rdp" else \
        PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
    with _quiet_absl():
        acc.compose(_event(history))
        return float(acc.get_epsilon(delta))


@contextmanager
def _quiet_absl():
    """dp-accounting logs (through absl) one warning per fractional order its series leaves out; that order is
    excluded from the minimum, which only makes its ε larger, so the warnings are silenced."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def ledger_epsilon(ledger: PrivacyLedger) -> float:
    """The ledger's ε with dp-accounting, under the same conventions as validate_ledger (∞ when not private)."""
    if not ledger.is_private:
        return math.inf
    return epsilon_of_history(ledger.history(), ledger.delta, ledger.accountant)


def relative_difference(opacus_epsilon: float, independent_epsilon: float) -> float:
    """|ε_dp-accounting - ε_Opacus| / ε_Opacus; 0 when both are equal (both ∞ or both 0 included)."""
    if opacus_epsilon == independent_epsilon:
        return 0.0
    if not (math.isfinite(opacus_epsilon) and math.isfinite(independent_epsilon)) or opacus_epsilon == 0:
        return math.inf
    return abs(independent_epsilon - opacus_epsilon) / abs(opacus_epsilon)


def comparable_opacus_epsilon(opacus_epsilon: float, accountant: str) -> float:
    """Opacus's ε as dp-accounting's is compared with: for "prv", without the eps_error Opacus adds to its estimate."""
    if accountant == "prv" and math.isfinite(opacus_epsilon) and opacus_epsilon > 0:
        return max(opacus_epsilon - OPACUS_PRV_EPS_ERROR, 0.0)
    return opacus_epsilon


def check_agreement(ledger: PrivacyLedger, opacus_epsilon: float) -> float:
    """dp-accounting's ε of the ledger; AccountantDisagreementError when it is more than 1% (relative) away from
    Opacus's `opacus_epsilon` (for "prv", from Opacus's estimate: its ε less its declared eps_error)."""
    independent = ledger_epsilon(ledger)
    if not relative_difference(comparable_opacus_epsilon(opacus_epsilon, ledger.accountant),
                               independent) <= AGREEMENT_TOLERANCE:
        raise AccountantDisagreementError(opacus_epsilon, independent, ledger.accountant)
    return independent
