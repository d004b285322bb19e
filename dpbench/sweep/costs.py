"""What a cell would cost, for `dpbench sweep --dry-run`: DP steps, samples, and the DP step time measured by
`benchmarks/dp_step.py` (its table in benchmarks/RESULTS.md) when the method has one there."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import dpbench
from dpbench.sweep.plan import CellPlan

RESULTS = Path(dpbench.__file__).resolve().parents[1] / "benchmarks" / "RESULTS.md"
MEASURED_BATCH = 64  # dp_step.py's batch
_ROW = re.compile(r"^\|\s*(?P<method>[\w.-]+)\s*\|[^|]*\|\s*(?P<k>\d+)\s*\|\s*dp\s*\|\s*(?P<seconds>[\d.]+)\s*\|")


@lru_cache(maxsize=1)
def measured_step_seconds(results: Path = RESULTS) -> dict[str, float]:
    """{method: seconds per DP step at batch 64, K = 1}; empty outside a source checkout."""
    try:
        lines = results.read_text().splitlines()
    except OSError:
        return {}
    measured = {}
    for line in lines:
        match = _ROW.match(line)
        if match and match["k"] == "1":
            measured.setdefault(match["method"], float(match["seconds"]))
    return measured


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
