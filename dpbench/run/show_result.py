"""What `dpbench run` and `dpbench evaluate` print: the record's metrics, privacy and cost as a table, or JSON."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def jsonable(value: Any) -> Any:
    """`value` with every non-finite float as text ('inf', 'nan'), which JSON has no number for."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def result_table(record: dict) -> Table:
    table = Table(title=f"{record['method']['name']} on {record['pair']['name']}, "
                        f"eps={record['privacy']['epsilon_target']}, seed {record['seed']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    outside = record.get("outside_guarantee", {}).get("metrics", {})  # computed on private train: ε does not cover
    for name, metric in [*record["metrics"].items(), *outside.items()]:
        arrow = "↑" if metric["higher_is_better"] else "↓"
        notes = [note for note, applies in (("reference", metric.get("reference")), ("outside ε", name in outside))
                 if applies]
        suffix = f" ({', '.join(notes)})" if notes else ""
        table.add_row(f"{name} {arrow}{suffix}", f"{float(metric['value']):.4g}")
    if record.get("withheld", {}).get("grid"):
        table.add_row("sample grid", "withheld: " + record["withheld"]["grid"])
    privacy = record["privacy"]
    if "epsilon" in privacy:
        table.add_row("epsilon (recomputed)", f"{privacy['epsilon']:.4g}")
        for i, stage in enumerate(privacy.get("stages", [])):
            table.add_row(f"stage {i}: sigma / C / q / steps",
                          f"{stage['noise_multiplier']:.4g} / {stage['max_grad_norm']} / "
                          f"{stage['sample_rate']:.4g} / {stage['steps']}")
    cost = record.get("cost", {})
    for stage, seconds in cost.get("wall_seconds", {}).items():
        table.add_row(f"wall s: {stage}", f"{seconds:.1f}")
    if "peak_memory_mb" in cost:
        table.add_row(f"peak memory MB ({cost['peak_memory_kind']})", f"{cost['peak_memory_mb']:.0f}")
        table.add_row("trainable params", f"{cost['trainable_parameters']:,} ({cost['trainable_fraction']:.2%})")
    return table


def print_result(record: dict, path: Path) -> None:
    console = Console()
    console.print(result_table(record))
    console.print(f"record: {path}  status: {record['status']}")
