"""The leaderboard's records as one table: a row per completed run, each run once."""
from __future__ import annotations

import math

import pandas as pd

from dpbench.report.step_times import scope_of
from dpbench.run.records import decode_number

# rows whose DP noise came from the run seed are simulations of DP: anyone with the seed can regenerate the noise
NOISE_LABEL = {"seeded (simulation)": "seeded", "os-seeded": "os-seeded", "secure": "secure"}
CELL_KEYS = ["pair", "method", "preset", "config_hash", "epsilon"]  # one leaderboard row, averaged over its seeds
KID_DEFAULT_SUBSET = 1000  # torch-fidelity's kid_subset_size default, which records before kid_subset_size used
OUTSIDE_ATTR = "outside_guarantee"
# the copy check's metrics (copies_train_fraction, copies_test_fraction, copies_ct, copies_flagged) make one column
MEMORISATION_METRICS = ("copies_train_fraction", "copies_test_fraction", "copies_ct", "copies_flagged")
OTHER_LOAD = 1.0  # a run shared the machine when, at its end, the 1-minute load average minus its own torch threads
# was at least one busy core


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


def load_status(env: dict) -> str:
    """"alone", "shared" or "unknown" (the record carries no env.concurrency). A run shared the machine when its
    sweep ran several cells at once, or when the load average at its end exceeds its own torch threads by
    OTHER_LOAD. The load at its start is not used: a sequential sweep's previous cell still weighs on it."""
    concurrency = env.get("concurrency")
    if not isinstance(concurrency, dict):
        return "unknown"
    jobs, threads, load_end = (concurrency.get(k) for k in ("sweep_jobs", "torch_threads", "load_end"))
    if isinstance(load_end, (list, tuple)):  # the 1-, 5- and 15-minute averages: the 1-minute one follows the run
        load_end = load_end[0] if load_end else None
    if jobs is not None and jobs > 1:
        return "shared"
    if threads is None or load_end is None:
        return "unknown"
    return "shared" if load_end - threads >= OTHER_LOAD else "alone"


def examples_processed(privacy: dict) -> int | None:
    """Steps × expected batch summed over the ledger's stages: the work of DP fine-tuning, which load cannot
    distort."""
    stages = privacy.get("stages") or []
    total = sum((stage.get("steps") or 0) * (stage.get("expected_batch_size") or 0) for stage in stages)
    return int(total) if total else None


def withheld_reason(record: dict) -> str | None:
    """Why the run's sample grid is not shown: the record's own `withheld.grid`, or a memorisation flag."""
    reason = (record.get("withheld") or {}).get("grid")
    if reason:
        return str(reason)
    metrics = {**record.get("metrics", {}), **record.get("outside_guarantee", {}).get("metrics", {})}
    flagged = metrics.get("copies_flagged", {}).get("value")
    return "flagged as copying training images" if flagged else None


def records_frame(records: list[dict]) -> tuple[pd.DataFrame, dict[str, bool]]:
    """One row per completed run, also which metrics are higher-is-better. A run read twice (the same pair, method,
    preset, config, ε and seed, e.g. copied under two paths) is one row. Metrics from the records'
    `outside_guarantee` (figures ε does not cover) are columns too, named in frame.attrs[OUTSIDE_ATTR]."""
    rows, direction, seen, outside = [], {}, set(), set()
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
            "commit": (record.get("env", {}).get("git_commit") or "unknown")[:7],
            "data_digest": record["pair"].get("data_digest"), "load": load_status(record.get("env", {})),
            "examples": examples_processed(privacy), "produces": record["method"].get("produces"),
            "method_reference": record["method"].get("reference") or "",
            "n_private_train": record["pair"].get("n_private_train"), "withheld": withheld_reason(record),
            "scope": scope_of(record["method"].get("settings") or {}),
        }
        outside_metrics = record.get("outside_guarantee", {}).get("metrics", {})
        for name, metric in {**record["metrics"], **outside_metrics}.items():
            row[name] = decode_number(metric["value"])
            direction[name] = bool(metric["higher_is_better"])
        outside.update(outside_metrics)
        if "fid" in record["metrics"]:
            row["fid_samples"] = record["metrics"]["fid"].get("n_generated")
        if "kid" in record["metrics"]:
            kid = record["metrics"]["kid"]
            row["kid_std"] = decode_number(kid.get("kid_std"))
            row["kid_subset_size"], row["kid_subset_is_whole_set"] = kid_subset_info(kid)
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs[OUTSIDE_ATTR] = sorted(outside)
    return frame, direction


def metric_order(direction: dict[str, bool]) -> list[str]:
    order = [m for m in ("fid", "kid", "accuracy", "accuracy_real_data", "accuracy_public_only") if m in direction]
    return order + sorted(m for m in direction if m not in order and m not in MEMORISATION_METRICS)


def metric_format(name: str) -> str:
    return ".2%" if name.startswith("accuracy") else ".4g"
