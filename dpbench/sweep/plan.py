"""Planning a sweep: each cell's request, checked as `dpbench run` checks it, and the folder its record goes to
(from the same config hash `dpbench run` computes), so that cells already done are skipped."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpbench.api.registry import Registry, UnknownNameError
from dpbench.data.digest import data_digest
from dpbench.privacy.randomness import RNG_KINDS
from dpbench.run.environment import git_commit
from dpbench.run.prepare import load_data, plan_run
from dpbench.run.records import RECORD_NAME
from dpbench.run.request import RunInputError, RunRequest
from dpbench.sweep.grid_spec import Cell, SweepInputError

TODO, DONE, FAILED, STALE = "todo", "done", "failed", "stale"


@dataclass
class CellPlan:
    cell: Cell
    request: RunRequest
    run_dir: Path
    config_hash: str
    settings: Any  # the method's resolved settings (what a dry run reports)
    num_classes: int
    state: str = TODO  # DONE: a completed record with this config hash exists; FAILED: a failed one does;
    # STALE: a completed one made by other code (another git commit) or from other data
    earlier_error: str | None = None
    stale_reason: str | None = None


def cell_request(template: RunRequest, cell: Cell) -> RunRequest:
    return dataclasses.replace(template, method=cell.method, pair=cell.pair, epsilon=cell.epsilon, seed=cell.seed,
                               overrides=dict(cell.overrides))


def plan_cells(registry: Registry, cells: list[Cell], template: RunRequest) -> list[CellPlan]:
    """Check every cell's input and find its record folder through the runner's own prepare step; raises
    SweepInputError (naming the cell) before anything runs. Each pair's data is loaded and digested once."""
    if template.rng not in RNG_KINDS:
        raise SweepInputError(f"rng must be one of {', '.join(RNG_KINDS)}, got '{template.rng}'")
    loaded: dict[str, tuple] = {}  # pair -> (data, digest)
    plans = []
    commit = git_commit()
    for cell in cells:
        request = cell_request(template, cell)
        try:
            if cell.pair not in loaded:
                data = load_data(registry, request)  # DataMissingError propagates
                loaded[cell.pair] = (data, data_digest(data))
            data, digest = loaded[cell.pair]
            plan = plan_run(registry, request, data, digest=digest)
        except (RunInputError, UnknownNameError) as exc:
            raise SweepInputError(f"cell {cell.label}: {exc}") from None
        plans.append(_with_state(CellPlan(cell, request, plan.directory, plan.config_hash, plan.resolved.settings,
                                          plan.resolved.pair.num_classes), commit, digest))
    return plans


def stale_reason(record: dict, commit: str | None, digest: str) -> str | None:
    """Why a completed record no longer stands for what this code would compute: another git commit made it (when
    both commits are known), or it was computed on other data. None when it is current."""
    made_by = (record.get("env") or {}).get("git_commit")
    if commit and made_by and made_by != commit:
        return f"made by commit {made_by[:10]}, the code is now at {commit[:10]}"
    recorded = (record.get("pair") or {}).get("data_digest")
    if recorded and recorded != digest:
        return f"computed on data {recorded[:12]}, the data is now {digest[:12]}"
    return None


def _with_state(plan: CellPlan, commit: str | None = None, digest: str = "") -> CellPlan:
    """DONE for a completed record of the same config hash, STALE for one made by other code or data, FAILED for a
    failed one; TODO otherwise (no record, an unreadable one, or one left by a run that was killed)."""
    path = plan.run_dir / RECORD_NAME
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return plan
    if record.get("config_hash") != plan.config_hash:
        return plan
    if record.get("status") == "completed":
        plan.stale_reason = stale_reason(record, commit, digest)
        plan.state = STALE if plan.stale_reason else DONE
    elif record.get("status") == "failed":
        plan.state = FAILED
        error = record.get("error") or {}
        plan.earlier_error = f"{error.get('type', 'error')}: {error.get('message', '')}"
    return plan
