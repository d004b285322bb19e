"""`dpbench sweep --dry-run`: the cells, what each would do (run, skip, or stay failed) and what it would cost."""
from __future__ import annotations

from rich.table import Table

from dpbench.sweep.costs import MEASURED_BATCH, cell_cost
from dpbench.sweep.plan import DONE, FAILED, STALE, CellPlan

WOULD = {DONE: "skip (done)", FAILED: "failed earlier", "todo": "run"}


def would(plan: CellPlan, rerun_stale: bool = False) -> str:
    if plan.state == STALE:
        return "run again (stale)" if rerun_stale else "skip (stale: --rerun-stale runs it)"
    return WOULD[plan.state]


def dry_run_document(plans: list[CellPlan], rerun_stale: bool = False) -> list[dict]:
    return [{"cell": plan.cell.label, "method": plan.cell.method, "pair": plan.cell.pair,
             "epsilon": plan.cell.epsilon, "seed": plan.cell.seed, "overrides": dict(plan.cell.overrides),
             "would": would(plan, rerun_stale), "stale": plan.stale_reason, "run_dir": str(plan.run_dir),
             "config_hash": plan.config_hash, **cell_cost(plan)} for plan in plans]


def dry_run_table(plans: list[CellPlan], rerun_stale: bool = False) -> Table:
    to_run = sum(plan.state not in (DONE, STALE) or (plan.state == STALE and rerun_stale) for plan in plans)
    table = Table(title=f"sweep (dry run): {len(plans)} cells, {to_run} to run; nothing was run or written",
                  caption=f"s/step: a DP step measured by benchmarks/dp_step.py (batch {MEASURED_BATCH}, the default "
                          "preset's model); est. s: steps × s/step × batch / 64, the DP fine-tune only")
    table.add_column("cell", no_wrap=True)
    table.add_column("would", no_wrap=True)
    for column in ("steps", "batch", "samples", "s/step", "est. s"):
        table.add_column(column, justify="right")
    for row in dry_run_document(plans, rerun_stale):
        table.add_row(row["cell"], row["would"], _text(row["steps"]), _text(row["batch_size"]), _text(row["samples"]),
                      _text(row["step_seconds_measured"], "{:.3f}", "not measured"),
                      _text(row["finetune_seconds_estimate"], "{:.0f}"))
    return table


def _text(value, fmt: str = "{}", missing: str = "") -> str:
    return missing if value is None else fmt.format(value)
