"""What a cell would cost, for `dpbench sweep --dry-run`: DP steps, samples, and the DP step time measured by
`benchmarks/dp_step.py --k 1 4 --json` (its rows in benchmarks/dp_step-issue12.json) for the per-example
implementation the engine picks for the method's scope, when the method has a row there."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import dpbench
from dpbench.privacy.per_example.choice import AUTO_ORDER
from dpbench.sweep.plan import CellPlan

MEASURED = Path(dpbench.__file__).resolve().parents[1] / "benchmarks" / "dp_step-issue12.json"
MEASURED_BATCH = 64  # dp_step.py's batch


def _engine_choice(row: dict) -> str:
    """The implementation the engine picks for a benchmark row: every measured model and loss supports the
    first of the automatic order (ghost), which every built-in scope also declares."""
    return AUTO_ORDER[0]


@lru_cache(maxsize=1)
def measured_step_seconds(measured: Path = MEASURED) -> dict[str, float]:
    """{method: seconds per DP step at batch 64, K = 1, with the engine's implementation}; empty outside a
    source checkout."""
    try:
        rows = json.loads(measured.read_text())
    except (OSError, ValueError):
        return {}
    return {row["method"]: float(row["seconds_per_step"]) for row in rows
            if row.get("mode") == "dp" and row.get("k") == 1 and row.get("implementation") == _engine_choice(row)}


def cell_cost(plan: CellPlan) -> dict:
    """steps, batch size and synthetic samples from the resolved settings (the preset and --set), and an
    estimate of the DP fine-tune time: steps × the measured step time scaled by batch size / 64."""
    settings = plan.settings
    steps = getattr(settings, "steps", None) if plan.request.epsilon != 0 else 0
    batch = getattr(settings, "batch_size", None)
    per_class = getattr(settings, "samples_per_class", None)
    step_seconds = measured_step_seconds().get(plan.cell.method)
    estimate = None
    if step_seconds is not None and isinstance(steps, int) and isinstance(batch, int):
        estimate = steps * step_seconds * batch / MEASURED_BATCH
    return {"steps": steps, "epochs": getattr(settings, "epochs", None), "batch_size": batch,
            "samples": per_class * plan.num_classes if isinstance(per_class, int) else None,
            "step_seconds_measured": step_seconds, "finetune_seconds_estimate": estimate}
