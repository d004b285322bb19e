"""The record's sections as a run fills them: the start (method, pair, config, env), the privacy books, and what
lies outside the guarantee."""
from __future__ import annotations

import torch

from dpbench.api.settings import as_dict
from dpbench.privacy.independent_accountant import check_agreement
from dpbench.privacy.randomness import RECORD_LABEL
from dpbench.run.environment import now, software_env
from dpbench.run.prepare import PreparedRun
from dpbench.run.records import SCHEMA_VERSION


def started_record(run: PreparedRun, origin, world_size: int, device: torch.device) -> dict:
    """The record as written for a run that has not finished: status "running", no metrics."""
    request, method, pair, data = run.request, run.resolved.method, run.resolved.pair, run.data
    plugin = {"name": getattr(origin, "name", None), "distribution": getattr(origin, "distribution", None),
              "version": getattr(origin, "version", None)}
    return {
        "schema_version": SCHEMA_VERSION, "status": "running", "kind": "audit" if request.audit else "run",
        "method": {"name": method.name, "produces": method.produces, "reference": method.reference,
                   "settings": as_dict(run.resolved.settings), "overrides": dict(request.overrides), "plugin": plugin},
        "pair": {"name": pair.name, "data_digest": run.digest, "n_public": len(data.public_train),
                 "n_private_train": len(data.private_train), "n_private_test": len(data.private_test),
                 "info": _plain_info(data.info)},
        "preset": request.preset, "seed": request.seed, "config_hash": run.config_hash, "config": run.config,
        "world_size": world_size, "warnings": list(run.warnings),
        "privacy": {"epsilon_target": request.epsilon, "delta": request.delta, "large_delta": run.large_delta},
        "metrics": {}, "outside_guarantee": {"overlap": dict(run.overlap), "metrics": {}},
        "cost": {}, "env": software_env(device), "started_at": now(), "finished_at": None,
    }


def privacy_section(run: PreparedRun, ledger, epsilon: float, books) -> dict:
    """The privacy section once training is done: ε recomputed from the books' ledger (Opacus's, and dp-accounting's
    beside it: AccountantDisagreementError when they are more than 1% apart), and how it was spent. The books'
    data-dependent counts go to `outside_section`, not here."""
    request = run.request
    epsilon_dp_accounting = check_agreement(ledger, epsilon)
    return {"epsilon_target": request.epsilon, "epsilon": epsilon, "epsilon_dp_accounting": epsilon_dp_accounting,
            "delta": request.delta,
            "large_delta": run.large_delta, "rng": RECORD_LABEL[request.rng],
            "resumed_from_steps": [t.resumed_from_step for t in books.trainers] if books else [],
            "private": ledger.is_private and ledger.steps > 0,
            **{k: v for k, v in ledger.to_dict().items() if k not in ("epsilon_target", "delta")}}


def outside_section(record: dict, books) -> None:
    """Add the books' non-finite example count (a count over private examples, released without noise) to the
    record's `outside_guarantee` section, which holds every data-dependent figure that ε does not cover."""
    outside = record.setdefault("outside_guarantee", {})
    outside["nonfinite_examples"] = books.nonfinite_examples if books is not None else 0


def _plain_info(info: dict) -> dict:
    """The pair's provenance fields that belong in a JSON record (callables such as streams are left out)."""
    plain = (str, int, float, bool, type(None), list, tuple, dict)
    return {k: v for k, v in info.items() if k != "warnings" and isinstance(v, plain)}
