"""The end of a sweep: one row per cell (done, skipped or failed, with the reason), counts, the exit code."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from rich.table import Table

DONE, SKIPPED, STALE, FAILED = "done", "skipped", "stale", "failed"


@dataclass(frozen=True)
class CellOutcome:
    label: str
    status: str  # DONE (ran and completed now), SKIPPED (completed earlier), STALE (completed earlier by other
    # code or data, kept without --rerun-stale), FAILED (now or earlier)
    reason: str | None = None
    run_dir: str | None = None
    seconds: float | None = None


def counts(outcomes: list[CellOutcome]) -> dict[str, int]:
    return {status: sum(o.status == status for o in outcomes) for status in (DONE, SKIPPED, STALE, FAILED)}


def exit_code(outcomes: list[CellOutcome]) -> int:
    """0 only when every cell has a completed record (a stale one counts: it is listed, not missing)."""
    return 0 if all(o.status in (DONE, SKIPPED, STALE) for o in outcomes) else 1


def summary_table(outcomes: list[CellOutcome], wall_seconds: float) -> Table:
    n = counts(outcomes)
    table = Table(title=f"sweep: {n[DONE]} done, {n[SKIPPED]} skipped, {n[STALE]} stale, {n[FAILED]} failed "
                        f"({len(outcomes)} cells, {wall_seconds:.0f} s)")
    for column in ("cell", "status", "seconds", "reason / run folder"):
        table.add_column(column, justify="right" if column == "seconds" else "left", overflow="fold")
    for outcome in outcomes:
        style = {DONE: "green", SKIPPED: "dim", STALE: "yellow", FAILED: "red"}[outcome.status]
        seconds = f"{outcome.seconds:.0f}" if outcome.seconds is not None else ""
        table.add_row(outcome.label, f"[{style}]{outcome.status}[/]", seconds, outcome.reason or outcome.run_dir or "")
    return table


def summary_document(outcomes: list[CellOutcome], wall_seconds: float) -> dict:
    return {"counts": counts(outcomes), "exit_code": exit_code(outcomes), "wall_seconds": round(wall_seconds, 1),
            "cells": [asdict(o) for o in outcomes]}
