"""The leaderboard's records as one table: a row per completed run, each run once."""
from __future__ import annotations

import math

import pandas as pd

from dpbench.run.records import decode_number

# rows whose DP noise came from the run seed are simulations of DP: anyone with the seed can regenerate the noise
NOISE_LABEL = {"seeded (simulation)": "seeded", "os-seeded": "os-seeded", "secure": "secure"}
CELL_KEYS = ["pair", "method", "preset", "config_hash", "epsilon"]  # one leaderboard row, averaged over its seeds
KID_DEFAULT_SUBSET = 1000  # torch-fidelity's kid_subset_size default, which records before kid_subset_size used


def is_leaderboard_record(record: dict) -> bool:
    """Completed runs on a pair's real splits; `dpbench tune`'s proxy trials (public data only) are left out."""
    return (record.get("status") == "completed" and record.get("kind", "run") == "run"
            and "proxy" not in record.get("pair", {}).get("info", {}))


def config_label(overrides: dict) -> str:
    """"preset defaults" for a run of the preset's own settings, else the overridden settings, e.g. "rank=8, steps=300"."""
    if not overrides:
        return "preset defaults"
    return ", ".join(f"{k}={v}" for k, v in sorted(overrides.items()))


def is_reference_epsilon(epsilon: float) -> bool:
    """ε = ∞ (the method without DP) and ε = 0 (the public-only model) are references, not points on the ε axis."""
    return math.isinf(epsilon) or epsilon == 0


def kid_subset_info(metric: dict) -> tuple[int | None, bool]:
    """(KID subset size, whether every subset was the whole set). Records written before the subset size was
    recorded used min(1000, n_generated, n_reference), so theirs is inferred from the sample counts."""
    n = [metric[k] for k in ("n_generated", "n_reference") if k in metric]
    size = metric.get("kid_subset_size")
    if size is None and n:
        size = min(KID_DEFAULT_SUBSET, *n)
    return size, bool(n) and size is not None and size >= min(n)


def _device(record: dict) -> str:
    device = str(record.get("cost", {}).get("device") or record.get("env", {}).get("device") or "cpu")
    return "GPU" if device.startswith("cuda") else "CPU"


def records_frame(records: list[dict]) -> tuple[pd.DataFrame, dict[str, bool]]:
    """One row per completed run, also which metrics are higher-is-better. A run read twice (the same pair, method,
    preset, config, ε and seed, e.g. copied under two paths) is one row."""
    rows, direction, seen = [], {}, set()
    for record in records:
        if not is_leaderboard_record(record):
            continue
        privacy, cost = record["privacy"], record.get("cost", {})
        identity = (record["pair"]["name"], record["method"]["name"], record["preset"], record["config_hash"],
                    decode_number(privacy["epsilon_target"]), record["seed"])
        if identity in seen:
            continue
        seen.add(identity)
        wall = cost.get("wall_seconds", {})
        row = {
            "pair": record["pair"]["name"], "method": record["method"]["name"], "seed": record["seed"],
            "preset": record["preset"], "config_hash": record["config_hash"],
            "config": config_label(record["method"].get("overrides", {}))
            + (f" **δ = {privacy['delta']:g} ≥ 1/n**" if privacy.get("large_delta") else ""),
            "epsilon": decode_number(privacy["epsilon_target"]),
            "epsilon_spent": decode_number(privacy.get("epsilon")),
            "noise": NOISE_LABEL.get(privacy.get("rng", "seeded (simulation)"), privacy.get("rng")),
            "trainable_parameters": cost.get("trainable_parameters"),
            "trainable_fraction": cost.get("trainable_fraction"),
            "wall_total": wall.get("total"), "peak_memory_mb": cost.get("peak_memory_mb"),
            "wall_finetune": wall.get("finetune"), "device": _device(record),
        }
        for name, metric in record["metrics"].items():
            row[name] = decode_number(metric["value"])
            direction[name] = bool(metric["higher_is_better"])
        if "fid" in record["metrics"]:
            row["fid_samples"] = record["metrics"]["fid"].get("n_generated")
        if "kid" in record["metrics"]:
            kid = record["metrics"]["kid"]
            row["kid_std"] = decode_number(kid.get("kid_std"))
            row["kid_subset_size"], row["kid_subset_is_whole_set"] = kid_subset_info(kid)
        rows.append(row)
    return pd.DataFrame(rows), direction


def metric_order(direction: dict[str, bool]) -> list[str]:
    order = [m for m in ("fid", "kid", "accuracy", "accuracy_real_data", "accuracy_public_only") if m in direction]
    return order + sorted(m for m in direction if m not in order)


def metric_format(name: str) -> str:
    return ".2%" if name.startswith("accuracy") else ".4g"
