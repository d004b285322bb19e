"""The independent ε re-check: Google's dp-accounting beside Opacus, on random histories and every committed record."""
import copy
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpbench.privacy import independent_accountant
from dpbench.privacy.accountant import epsilon_of_history, validate_ledger
from dpbench.privacy.independent_accountant import (AGREEMENT_TOLERANCE, AccountantDisagreementError,
                                                    check_agreement, ledger_epsilon, relative_difference)
from dpbench.privacy.ledger import PrivacyLedger, PrivacyStage
from dpbench.report.recheck import partition, privacy_problem
from tests.test_records import _run, _the_record, faulty  # noqa: F401 - faulty is a fixture

RECORDS = sorted((Path(__file__).resolve().parents[1] / "leaderboard" / "records").rglob("record.json"))
DELTA = 1e-5
# Beyond ε ~ 12 dp-accounting 0.6.0's loose RDP of fractional orders (a sum of |binomial| terms) puts its ε more than
# 1% above Opacus's exact one; every ε the benchmark targets lies below.
AGREEING_EPSILON = 10.0

stage_entries = st.tuples(st.floats(0.5, 5.0), st.floats(1e-3, 0.2), st.integers(1, 2000))


@settings(max_examples=15, deadline=None)
@given(st.lists(stage_entries, min_size=1, max_size=3))
def test_rdp_accountants_agree_on_random_histories(history):
    opacus = epsilon_of_history(history, DELTA, "rdp")
    independent = independent_accountant.epsilon_of_history(history, DELTA, "rdp")
    if opacus <= AGREEING_EPSILON:
        assert relative_difference(opacus, independent) <= AGREEMENT_TOLERANCE, (history, opacus, independent)
    else:  # dp-accounting's bound is only ever the looser one, never a smaller ε than Opacus's
        assert independent >= opacus * (1 - AGREEMENT_TOLERANCE), (history, opacus, independent)


@pytest.mark.parametrize("history", [[(2.1, 0.032, 200)], [(0.85, 0.128, 50)], [(1.0, 0.01, 2000), (3.0, 0.2, 30)]])
def test_prv_and_pld_agree_once_opacus_error_margin_is_taken_off(history):
    stages = tuple(PrivacyStage(noise_multiplier=s, sample_rate=q, expected_batch_size=1, steps=n, planned_steps=n,
                                max_grad_norm=1.0) for s, q, n in history)
    ledger = PrivacyLedger(accountant="prv", delta=DELTA, epsilon_target=100.0, n_private=1, stages=stages)
    opacus = epsilon_of_history(history, DELTA, "prv")
    assert check_agreement(ledger, opacus) == pytest.approx(opacus - 0.01, rel=1e-3)


def test_non_private_and_empty_ledgers_match_opacus_conventions():
    stage = PrivacyStage(noise_multiplier=0.0, sample_rate=0.1, expected_batch_size=10, steps=5, planned_steps=5,
                         max_grad_norm=None)
    assert check_agreement(PrivacyLedger("rdp", DELTA, math.inf, 100, (stage,)), math.inf) == math.inf
    assert check_agreement(PrivacyLedger("rdp", DELTA, 0.0, 100, ()), 0.0) == 0.0
    assert independent_accountant.epsilon_of_history([(0.0, 0.1, 5)], DELTA, "prv") == math.inf
    with pytest.raises(AccountantDisagreementError, match="Opacus gives ε = 1.*dp-accounting gives ε = inf"):
        check_agreement(PrivacyLedger("rdp", DELTA, math.inf, 100, (stage,)), 1.0)


def _committed(path: Path) -> tuple[dict, PrivacyLedger, float]:
    record = json.loads(path.read_text())
    privacy = record["privacy"]
    ledger = PrivacyLedger.from_dict(privacy)
    opacus = validate_ledger(ledger, epsilon_target=float(privacy["epsilon_target"]), delta=float(privacy["delta"]),
                             n_private=int(record["pair"]["n_private_train"]))
    return record, ledger, opacus


def test_a_disagreeing_accountant_leaves_the_record_out(monkeypatch):
    record, ledger, opacus = _committed(next(p for p in RECORDS if "eps5" in p.parts))
    assert privacy_problem(record) is None
    forced = opacus * 1.02
    monkeypatch.setattr(independent_accountant, "ledger_epsilon", lambda _ledger: forced)
    problem = privacy_problem(record)
    assert problem is not None and problem.startswith("AccountantDisagreementError")
    assert f"{opacus:.6g}" in problem and f"{forced:.6g}" in problem
    kept, refused = partition([record])
    assert not kept and len(refused) == 1
    monkeypatch.setattr(independent_accountant, "ledger_epsilon", lambda _ledger: opacus * 1.005)  # within 1%
    # the record's own dp-accounting figure must recompute exactly, so only the Opacus agreement is left to test
    unclaimed = {**record, "privacy": {k: v for k, v in record["privacy"].items() if k != "epsilon_dp_accounting"}}
    assert privacy_problem(unclaimed) is None


def test_a_record_whose_recorded_dp_accounting_epsilon_is_off_is_left_out():
    record, ledger, opacus = _committed(next(p for p in RECORDS if "eps5" in p.parts))
    tampered = copy.deepcopy(record)
    tampered["privacy"]["epsilon_dp_accounting"] = ledger_epsilon(ledger)
    assert privacy_problem(tampered) is None
    tampered["privacy"]["epsilon_dp_accounting"] = opacus / 2
    assert "with dp-accounting" in privacy_problem(tampered)


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: "/".join(p.parts[-6:-1]))
def test_both_accountants_agree_on_every_committed_record(path):
    _, ledger, opacus = _committed(path)
    independent = check_agreement(ledger, opacus)
    assert relative_difference(opacus, independent) <= AGREEMENT_TOLERANCE


def test_there_are_committed_records():
    assert len(RECORDS) >= 20


@pytest.mark.slow  # a whole run; the full suite (.ci/run) keeps it
def test_a_run_records_both_accountants_and_fails_when_they_disagree(faulty, tmp_path, shared_cache, monkeypatch):
    result = _run(tmp_path / "honest", shared_cache)
    assert result.exit_code == 0, result.output
    _, record = _the_record(tmp_path / "honest")
    privacy = record["privacy"]
    ledger = PrivacyLedger.from_dict(privacy)
    assert privacy["epsilon_dp_accounting"] == pytest.approx(ledger_epsilon(ledger))
    assert relative_difference(privacy["epsilon"], privacy["epsilon_dp_accounting"]) <= AGREEMENT_TOLERANCE

    monkeypatch.setattr(independent_accountant, "ledger_epsilon", lambda ledger: 2 * privacy["epsilon"])
    result = _run(tmp_path / "disagreeing", shared_cache)
    assert result.exit_code == 1 and "the accountants disagree" in result.output
    _, record = _the_record(tmp_path / "disagreeing")
    assert record["status"] == "failed" and record["error"]["type"] == "AccountantDisagreementError"
    assert "epsilon" not in record["privacy"] and "epsilon_dp_accounting" not in record["privacy"]
