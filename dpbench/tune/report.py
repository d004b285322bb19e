"""What `dpbench tune` writes and prints: one JSON file per (pair, preset, ε) and a table of the trials."""
from __future__ import annotations

import json
import math
from pathlib import Path

from rich.table import Table

from dpbench.storage import atomic_write_bytes
from dpbench.tune import protocol
from dpbench.tune.protocol import TuneResult
from dpbench.tune.proxy import ProxySplit


def tune_path(out: Path, pair: str, preset: str, epsilon: float) -> Path:
    eps = "inf" if math.isinf(epsilon) else f"{epsilon:g}"
    return Path(out) / f"tune-{pair}-{preset}-eps{eps}.json"


def write_tuning(path: Path, *, pair: str, preset: str, epsilon: float, delta: float, seed: int, split: ProxySplit,
                 results: list[TuneResult], classifier_fits: int = 1) -> dict:
    document = {
        "pair": pair, "preset": preset, "epsilon": epsilon, "delta": delta, "seed": seed,
        "protocol": {"proxy_split": split.to_dict(), "trial_budget": protocol.TRIAL_BUDGET,
                     "score": f"{protocol.SCORE_METRIC} on the proxy test split",
                     "trial_samples_per_class": protocol.TRIAL_SAMPLES_PER_CLASS,
                     "clip_factors": list(protocol.CLIP_FACTORS), "lr_factors": list(protocol.LR_FACTORS), "lr_refine": list(protocol.LR_REFINE),
                     "guidance_factors": list(protocol.GUIDANCE_FACTORS), "classifier_fits": classifier_fits},
        "methods": {r.method: r.to_dict() for r in results},
    }
    atomic_write_bytes(path, json.dumps(document, indent=2, default=str).encode())
    return document


def trials_table(result: TuneResult) -> Table:
    table = Table(title=f"{result.method} at ε = {result.epsilon:g}: proxy {protocol.SCORE_METRIC}")
    for column in ("#", "overrides", "proxy batch", protocol.SCORE_METRIC, "s", "status"):
        table.add_column(column)
    chosen = result.best() if any(t.score is not None for t in result.trials) else None
    for i, trial in enumerate(result.trials, 1):
        text = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.overrides.items())
        score = f"{trial.score:.3f}" if trial.score is not None else "–"
        mark = " ← chosen" if trial is chosen else ""
        table.add_row(str(i), text or "(preset)", str(trial.proxy_batch_size or "–"), score + mark,
                      f"{trial.seconds:.0f}", trial.status if not trial.error else f"{trial.status}: {trial.error}")
    return table
