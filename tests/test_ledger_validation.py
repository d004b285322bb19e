"""The harness's ledger check cannot be talked out of: each test hands it a ledger that violates one rule."""
import dataclasses
import math

import pytest
from hypothesis import given, settings, strategies as st

from dpbench.privacy.accountant import (EPSILON_TOLERANCE, LedgerError, PrivacyBudgetError, calibrate_noise,
                                        epsilon_of_history, validate_ledger)
from dpbench.privacy.ledger import PrivacyLedger, PrivacyStage

N = 4000
TARGET = 10.0


def _stage(**overrides) -> PrivacyStage:
    base = dict(noise_multiplier=1.0, sample_rate=256 / N, expected_batch_size=256, steps=100, planned_steps=100,
                max_grad_norm=1.0, noise_multiplicity=1, budget_share=1.0)
    return PrivacyStage(**{**base, **overrides})


def _ledger(stage=None, **overrides) -> PrivacyLedger:
    base = dict(accountant="rdp", delta=1e-5, epsilon_target=TARGET, n_private=N, stages=(stage or _stage(),))
    return PrivacyLedger(**{**base, **overrides})


def _check(ledger, epsilon_target=TARGET, delta=1e-5, n_private=N):
    return validate_ledger(ledger, epsilon_target=epsilon_target, delta=delta, n_private=n_private)


def test_a_valid_ledger_passes_and_is_recomputed():
    epsilon = _check(_ledger())
    assert 0 < epsilon <= TARGET
    assert epsilon == pytest.approx(epsilon_of_history([(1.0, 256 / N, 100)], 1e-5, "rdp"))


@pytest.mark.parametrize("stage, words", [
    (_stage(steps=1.5), "steps must be an int"),
    (_stage(steps=-1), "steps must be an int"),
    (_stage(steps=True), "steps must be an int"),
    (_stage(steps=101), "more than the 100 planned"),
    (_stage(sample_rate=0.0, expected_batch_size=0), "sample rate q must be in (0, 1]"),
    (_stage(sample_rate=1.5), "sample rate q must be in (0, 1]"),
    (_stage(sample_rate=0.001), "is not the harness's"),  # a method claiming a smaller q than b/n
    (_stage(noise_multiplier=0.0), "sigma > 0"),
    (_stage(noise_multiplier=-1.0), "sigma > 0"),
    (_stage(max_grad_norm=None), "positive clip norm"),
    (_stage(max_grad_norm=0.0), "positive clip norm"),
    (_stage(noise_multiplicity=0), "noise multiplicity"),
])
def test_malformed_stages_are_refused(stage, words):
    with pytest.raises(LedgerError) as info:
        _check(_ledger(stage))
    assert words in str(info.value)


def test_unknown_accountant_is_refused():
    with pytest.raises(LedgerError, match="unknown accountant"):
        _check(_ledger(accountant="moments"))


def test_sample_rate_is_recomputed_from_the_harness_n():
    with pytest.raises(LedgerError, match="n_private"):
        _check(_ledger(), n_private=2 * N)  # a ledger that claims a larger private set than the harness holds


def test_target_must_equal_what_the_user_asked_for():
    with pytest.raises(LedgerError, match="target"):
        _check(_ledger(epsilon_target=100.0))  # the method raised its own target
    with pytest.raises(LedgerError, match="target"):
        _check(_ledger(epsilon_target=math.inf))


def test_delta_must_equal_what_the_user_asked_for():
    with pytest.raises(LedgerError, match="delta"):
        _check(_ledger(delta=1e-3), delta=1e-5)


def test_overspending_is_refused():
    ledger = _ledger(_stage(noise_multiplier=0.3))
    with pytest.raises(PrivacyBudgetError, match="exceeds"):
        _check(ledger)


def test_a_run_at_eps_zero_takes_no_step():
    with pytest.raises(PrivacyBudgetError, match="no private step"):
        _check(_ledger(epsilon_target=0.0), epsilon_target=0.0)
    assert _check(_ledger(epsilon_target=0.0, stages=()), epsilon_target=0.0) == 0.0


@pytest.mark.slow  # PRV calibrations of random histories: 10-25 s; the full suite keeps it
@settings(max_examples=6, deadline=None)
@given(epsilon=st.sampled_from([1.0, 5.0, 10.0]), batch=st.integers(16, 1024), steps=st.integers(1, 200),
       first_share=st.floats(0.3, 0.7))
def test_calibrated_stages_recompute_within_target(epsilon, batch, steps, first_share):
    """Property: sigma calibrated by the harness, alone or after an earlier stage, recomputes to <= the target."""
    q = min(1.0, batch / N)
    sigma1 = calibrate_noise(epsilon * first_share, 1e-5, q, steps, "rdp")
    sigma2 = calibrate_noise(epsilon, 1e-5, q, steps, "rdp", prior=[(sigma1, q, steps)])
    stages = (_stage(noise_multiplier=sigma1, sample_rate=q, expected_batch_size=batch, steps=steps, planned_steps=steps,
                     budget_share=first_share),
              _stage(noise_multiplier=sigma2, sample_rate=q, expected_batch_size=batch, steps=steps, planned_steps=steps,
                     budget_share=1 - first_share))
    spent = _check(_ledger(epsilon_target=epsilon, stages=stages), epsilon_target=epsilon)
    assert spent <= epsilon
    assert epsilon - spent <= 2 * EPSILON_TOLERANCE + 1e-6  # and the search does not waste the budget


def test_an_unreachable_budget_is_a_clear_error():
    with pytest.raises(PrivacyBudgetError, match="no noise level meets"):
        calibrate_noise(0.05, 1e-5, 0.004, 1, "rdp")  # below RDP's floor log(1/delta)/(max alpha - 1)


def test_ledger_round_trips_through_the_record_form():
    ledger = _ledger()
    assert PrivacyLedger.from_dict(ledger.to_dict()) == ledger
    assert dataclasses.asdict(ledger.stages[0]) == ledger.to_dict()["stages"][0]
