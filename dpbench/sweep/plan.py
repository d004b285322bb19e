"""Planning a sweep: each cell's request, checked as `dpbench run` checks it, and the folder its record goes to
(from the same config hash `dpbench run` computes), so that cells already done are skipped."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpbench.api.registry import Registry, UnknownNameError
from dpbench.data.types import BadPairDataError, DataMissingError, check_pair_data
from dpbench.run.records import RECORD_NAME
from dpbench.run.runner import RunInputError, RunRequest, check_delta, data_digest, resolve, run_location
from dpbench.privacy.randomness import RNG_KINDS
from dpbench.sweep.grid_spec import Cell, SweepInputError

TODO, DONE, FAILED = "todo", "done", "failed"


@dataclass
class CellPlan:
    cell: Cell
    request: RunRequest
    run_dir: Path
    config_hash: str
    settings: Any  # the method's resolved settings (what a dry run reports)
    num_classes: int
    state: str = TODO  # DONE: a completed record with this config hash exists; FAILED: a failed one does
    earlier_error: str | None = None


def cell_request(template: RunRequest, cell: Cell) -> RunRequest:
    return dataclasses.replace(template, method=cell.method, pair=cell.pair, epsilon=cell.epsilon, seed=cell.seed,
                               overrides=dict(cell.overrides))


def plan_cells(registry: Registry, cells: list[Cell], template: RunRequest) -> list[CellPlan]:
    """Check every cell's input and find its record folder; raises SweepInputError (naming the cell) before
    anything runs. Each pair's data is loaded once here, for its digest (DataMissingError propagates)."""
    if template.rng not in RNG_KINDS:
        raise SweepInputError(f"rng must be one of {', '.join(RNG_KINDS)}, got '{template.rng}'")
    digests: dict[str, tuple[str, int]] = {}  # pair -> (data digest, n_private)
    plans = []
    for cell in cells:
        request = cell_request(template, cell)
        try:
            resolved = resolve(registry, request)
        except (RunInputError, UnknownNameError) as exc:
            raise SweepInputError(f"cell {cell.label}: {exc}") from None
        if cell.pair not in digests:
            digests[cell.pair] = _pair_digest(resolved.pair, template.data_root)
        digest, n_private = digests[cell.pair]
        try:
            check_delta(request, resolved.method, cell.pair, n_private)
        except RunInputError as exc:
            raise SweepInputError(f"cell {cell.label}: {exc}") from None
        _, config_hash, directory = run_location(request, resolved, digest)
        plans.append(_with_state(CellPlan(cell, request, directory, config_hash, resolved.settings,
                                             resolved.pair.num_classes)))
    return plans


def _pair_digest(pair, data_root: str | None) -> tuple[str, int]:
    try:
        data = pair.load(data_root)
    except DataMissingError:
        raise
    except Exception as exc:  # as `dpbench run` says it: name the pair, run nothing
        raise SweepInputError(f"pair '{pair.name}' could not load its data: {type(exc).__name__}: {exc}") from exc
    try:
        check_pair_data(pair, data)
    except BadPairDataError as exc:
        raise SweepInputError(str(exc)) from None
    return data_digest(data), len(data.private_train)


def _with_state(plan: CellPlan) -> CellPlan:
    """DONE for a completed record of the same config hash, FAILED for a failed one; TODO otherwise (no record,
    an unreadable one, or one left by a run that was killed)."""
    path = plan.run_dir / RECORD_NAME
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return plan
    if record.get("config_hash") != plan.config_hash:
        return plan
    if record.get("status") == "completed":
        plan.state = DONE
    elif record.get("status") == "failed":
        plan.state = FAILED
        error = record.get("error") or {}
        plan.earlier_error = f"{error.get('type', 'error')}: {error.get('message', '')}"
    return plan
