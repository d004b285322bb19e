"""The leaderboard trusts no record's ε: it recomputes each one from the record's own ledger."""
from __future__ import annotations

import math
import warnings

from dpbench.privacy.accountant import validate_ledger
from dpbench.privacy.independent_accountant import check_agreement
from dpbench.privacy.ledger import PrivacyLedger
from dpbench.run.records import decode_number


def privacy_problem(record: dict) -> str | None:
    """Why the record's privacy claim does not hold (None when it does): the ledger is validated against the
    record's own target, δ and private-split size, ε is recomputed with the Opacus accountant, and the claimed
    ε must equal the recomputed one. ε is recomputed a second time with dp-accounting, which must agree with
    Opacus within 1% (and with the record's `epsilon_dp_accounting`, where the record has one)."""
    privacy = record.get("privacy", {})
    try:
        ledger = PrivacyLedger.from_dict(privacy)
        epsilon = validate_ledger(ledger, epsilon_target=float(privacy["epsilon_target"]),
                                  delta=float(privacy["delta"]), n_private=int(record["pair"]["n_private_train"]))
        independent = check_agreement(ledger, epsilon)  # AccountantDisagreementError is a ValueError too
    except (KeyError, TypeError, ValueError) as exc:  # LedgerError and PrivacyBudgetError are ValueErrors
        return f"{type(exc).__name__}: {exc}"
    claimed = decode_number(privacy.get("epsilon"))
    if claimed is None or not (claimed == epsilon or math.isclose(claimed, epsilon, rel_tol=1e-6, abs_tol=1e-9)):
        return f"claims ε = {claimed}, but its ledger recomputes to {epsilon}"
    if "epsilon_dp_accounting" in privacy and not _same(decode_number(privacy["epsilon_dp_accounting"]), independent):
        return (f"claims ε = {privacy['epsilon_dp_accounting']} with dp-accounting, but its ledger recomputes to "
                f"{independent} with dp-accounting")
    return None


def _same(claimed: float | None, recomputed: float) -> bool:
    return claimed is not None and (claimed == recomputed
                                    or math.isclose(claimed, recomputed, rel_tol=1e-6, abs_tol=1e-9))


def partition(records: list[dict]) -> tuple[list[dict], list[str]]:
    """(records whose privacy claim holds, "<record> (<reason>)" for each of the others)."""
    kept, refused = [], []
    for record in records:
        problem = privacy_problem(record) if record.get("status") == "completed" else None
        if problem is None:
            kept.append(record)
        else:
            refused.append(f"{record.get('_path', record.get('method', {}).get('name'))} ({problem})")
    return kept, refused


def trusted(records: list[dict]) -> list[dict]:
    """The records whose privacy claim holds; the others are left out with a warning naming each."""
    kept, refused = partition(records)
    if refused:
        warnings.warn(f"left out {len(refused)} record(s) whose ε does not recompute: {'; '.join(refused)}",
                      stacklevel=2)
    return kept
