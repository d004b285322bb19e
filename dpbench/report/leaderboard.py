"""Build leaderboard/LEADERBOARD.md from run records: a table per pair and epsilon, mean ± std over seeds."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from dpbench.api.types import PublishedResult
from dpbench.report.recheck import partition
from dpbench.run.records import SAMPLES_NAME, decode_number, epsilon_label, read_records
from dpbench.storage import atomic_write_bytes

RECORDS_DIR = "records"  # under the leaderboard folder: the committed records it is rendered from
COST_COLUMNS = [("trainable_parameters", "trainable params"), ("trainable_fraction", "trainable %"),
                ("wall_finetune", "DP fine-tune s"), ("wall_total", "run wall s"), ("peak_memory_mb", "peak MB")]


def is_leaderboard_record(record: dict) -> bool:
    """Completed runs on a pair's real splits; `dpbench tune`'s proxy trials (public data only) are left out."""
    return (record.get("status") == "completed" and record.get("kind", "run") == "run"
            and "proxy" not in record.get("pair", {}).get("info", {}))


def latest_audits(records: list[dict]) -> dict[tuple, dict]:
    """The latest completed `dpbench audit` result per (pair, method, preset, claimed ε)."""
    latest: dict[tuple, dict] = {}
    for record in records:
        if record.get("kind") != "audit" or record.get("status") != "completed":
            continue
        key = (record["pair"]["name"], record["method"]["name"], record["preset"],
               decode_number(record["privacy"]["epsilon_target"]))
        if key not in latest or record.get("finished_at", "") > latest[key]["finished_at"]:
            latest[key] = {**record["audit"], "finished_at": record.get("finished_at", "")}
    return latest


def audit_label(audit: dict | None) -> str:
    if not audit:
        return "–"
    flag = " **over the claim**" if audit["epsilon_lower_bound"] > audit["epsilon_claimed"] else ""
    return (f"ε ≥ {audit['epsilon_lower_bound']:.2f} ({audit['correct_guesses']}/{audit['guesses']}, "
            f"m = {audit['canaries']}){flag}")


# rows whose DP noise came from the run seed are simulations of DP: anyone with the seed can regenerate the noise
NOISE_LABEL = {"seeded (simulation)": "seeded", "os-seeded": "os-seeded", "secure": "secure"}


def records_frame(records: list[dict]) -> tuple[pd.DataFrame, dict[str, bool]]:
    """One row per completed record; also which metrics are higher-is-better."""
    rows, direction = [], {}
    for record in records:
        if not is_leaderboard_record(record):
            continue
        privacy, cost = record["privacy"], record.get("cost", {})
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
            "wall_total": cost.get("wall_seconds", {}).get("total"), "peak_memory_mb": cost.get("peak_memory_mb"),
            "wall_finetune": cost.get("wall_seconds", {}).get("finetune"),
        }
        for name, metric in record["metrics"].items():
            row[name] = decode_number(metric["value"])
            direction[name] = bool(metric["higher_is_better"])
        rows.append(row)
    return pd.DataFrame(rows), direction


def config_label(overrides: dict) -> str:
    """"preset" for a run of the preset's own settings, else the overridden settings, e.g. "rank=8, steps=300"."""
    if not overrides:
        return "preset defaults"
    return ", ".join(f"{k}={v}" for k, v in sorted(overrides.items()))


def _mean_std(values: pd.Series, fmt: str) -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    if len(values) == 1:
        return format(values.iloc[0], fmt)
    return f"{format(values.mean(), fmt)} ± {format(values.std(ddof=1), fmt)}"


def _metric_format(name: str) -> str:
    return ".2%" if name.startswith("accuracy") else ".4g"


def _reference_label(method: str, epsilon: float) -> str | None:
    """Rows shown as references beside every private table: the non-private and the public-only runs."""
    if math.isinf(epsilon):
        return f"*{method} (no DP, ε = ∞)*"
    if epsilon == 0:
        return f"*{method} (no private data, ε = 0)*"
    return None


def _table(group: pd.DataFrame, metrics: list[str], direction: dict[str, bool], pair: str = "",
           sample_links: dict | None = None, audits: dict | None = None) -> str:
    sample_links, audits = sample_links or {}, audits or {}
    headers = (["method", "preset", "config", "seeds", "noise"] + [f"{m} {'↑' if direction[m] else '↓'}" for m in metrics]
               + [c[1] for c in COST_COLUMNS] + ["audit (95%)", "samples"])
    body = []
    for (epsilon, method, preset, config_hash), runs in group.groupby(["epsilon", "method", "preset", "config_hash"],
                                                                       sort=True):
        label = _reference_label(method, epsilon) or method
        noise = "–" if epsilon == 0 or math.isinf(epsilon) else "/".join(sorted(set(runs["noise"])))
        row = [label, preset, f"{runs['config'].iloc[0]} ({config_hash[:6]})", len(runs), noise]
        row += [_mean_std(runs[m], _metric_format(m)) if m in runs else "–" for m in metrics]
        row += [
            _mean_std(runs["trainable_parameters"], ",.0f"), _mean_std(runs["trainable_fraction"], ".2%"),
            _mean_std(runs["wall_finetune"], ".0f"), _mean_std(runs["wall_total"], ".0f"),
            _mean_std(runs["peak_memory_mb"], ".0f"),
        ]
        row.append(audit_label(audits.get((pair, method, preset, epsilon))))
        link = sample_links.get((pair, method, preset, config_hash, epsilon))
        row.append(f"[png]({link})" if link else "–")
        body.append(row)
    if "accuracy" in metrics and "accuracy_real_data" in group:
        body.append(_real_data_row(group, metrics, len(headers)))
    return tabulate(body, headers=headers, tablefmt="github")


def _real_data_row(group: pd.DataFrame, metrics: list[str], width: int) -> list:
    """The ceiling as a row of its own: the classifier trained on real private-train images (one value per seed,
    the same for every run of that seed), in the accuracy column."""
    per_seed = group.dropna(subset=["accuracy_real_data"]).groupby("seed")["accuracy_real_data"].first()
    row = ["*real data (ceiling)*", "–", "as many real private-train images as synthetic ones", len(per_seed), "–"]
    row += [_mean_std(per_seed, _metric_format(m)) if m == "accuracy" else "–" for m in metrics]
    return row + ["–"] * (width - len(row))


def _published_section(published: list[PublishedResult]) -> list[str]:
    lines = ["## Published reference numbers", "",
             "Marked references from the seed papers, in *their* settings (not dpbench runs); compare with care.", ""]
    body = [[f"**{p.method}**", p.private_dataset, epsilon_label(p.epsilon), p.delta,
             ", ".join(f"{k}={format(v, _metric_format(k))}" for k, v in p.metrics.items()), p.setting, p.source]
            for p in published]
    lines.append(tabulate(body, headers=["method", "private data", "ε", "δ", "metrics", "setting", "source"], tablefmt="github"))
    return lines


def render(records: list[dict], sample_links: dict | None = None, published: list[PublishedResult] = ()) -> str:
    kept, refused = partition(records)
    if refused:
        warnings.warn(f"left out {len(refused)} record(s) whose ε does not recompute: {'; '.join(refused)}",
                      stacklevel=2)
    frame, direction = records_frame(kept)
    audits = latest_audits(kept)
    sample_links = sample_links or {}
    lines = ["# dpbench leaderboard", "",
             "Generated by `dpbench leaderboard` from the run records; do not edit by hand. "
             "Cells are mean ± std over seeds (sample std). ↑: higher is better, ↓: lower is better. "
             "`accuracy_public_only` is a reference: the same classifier trained on the public split only; "
             "`accuracy_real_data` is the ceiling: the same classifier trained on as many real private-train images "
             "per class as the synthetic set has. "
             "Rows in italics are references repeated in every ε table of their pair: the same method without DP "
             "(ε = ∞) and the public-only model (ε = 0). `trainable %` is the share of the backbone's parameters "
             "that DP fine-tuning updates. `run wall s` includes public pre-training and the FID reference statistics "
             "only for the run that built them (later runs load them from the cache); `DP fine-tune s` is the "
             "method's own training time. `noise`: where the DP noise and sampling came from; **seeded** rows are "
             "reproducible simulations of DP (anyone with the seed can regenerate the noise), fit to compare methods "
             "but not to release a model; `secure` rows drew them from os.urandom (`dpbench run --secure-rng`). "
             "`audit (95%)`: the latest `dpbench audit` of the cell's method, preset and ε, an empirical lower bound "
             "on ε from one run with white-box gradient canaries (Steinke et al. 2023), with its correct guesses and "
             "canary count; a bound above the claimed ε is flagged.", ""]
    if frame.empty:
        lines.append("No completed runs yet.")
    else:
        metric_order = [m for m in ("fid", "kid", "accuracy", "accuracy_real_data", "accuracy_public_only") if m in direction]
        metric_order += sorted(m for m in direction if m not in metric_order)
        for pair, runs in frame.groupby("pair", sort=True):
            is_reference = runs["epsilon"].map(lambda e: math.isinf(e) or e == 0)
            references, private = runs[is_reference], runs[~is_reference]
            groups = [(f"ε = {epsilon_label(e)}", pd.concat([g, references])) for e, g in private.groupby("epsilon")]
            if not groups:
                groups = [("references only", references)]
            for title, group in groups:
                metrics = [m for m in metric_order if m in group and group[m].notna().any()]
                lines += [f"## {pair}, {title}", "",
                          _table(group, metrics, direction, pair, sample_links, audits), ""]
    pairs = set(frame["pair"]) if not frame.empty else set()
    shown = [p for p in published if not p.pairs or pairs & set(p.pairs)]
    if shown:
        lines += _published_section(shown)
    if refused:
        lines += ["", "## Left out", "", "Records whose ε does not recompute from their own ledger:", ""]
        lines += [f"- {entry}" for entry in refused]
    return "\n".join(lines) + "\n"


def sample_grid_sources(records: list[dict]) -> dict[tuple, tuple[Path, str]]:
    """Each (pair, method, preset, config, ε)'s lowest-seed sample grid and the link the leaderboard gives it."""
    chosen = {}
    for record in records:
        if record.get("status") != "completed" or "_path" not in record:
            continue
        grid = Path(record["_path"]).parent / SAMPLES_NAME
        key = (record["pair"]["name"], record["method"]["name"], record["preset"], record["config_hash"],
               decode_number(record["privacy"]["epsilon_target"]))
        if grid.exists() and (key not in chosen or record["seed"] < chosen[key][0]):
            chosen[key] = (record["seed"], grid)
    sources = {}
    for key, (_, grid) in chosen.items():
        pair, method, preset, config_hash, epsilon = key
        relative = Path("samples") / pair / f"{method}-{preset}-{config_hash[:6]}-eps{epsilon_label(epsilon)}.png"
        sources[key] = (grid, relative.as_posix())
    return sources


def copy_sample_grids(records: list[dict], output: Path) -> dict[tuple, str]:
    """Copy each cell's lowest-seed sample grid next to the leaderboard; returns the relative links."""
    links = {}
    for key, (grid, relative) in sample_grid_sources(records).items():
        atomic_write_bytes(Path(output) / relative, grid.read_bytes())
        links[key] = relative
    return links


def collect_records(runs: Path, records_dir: Path) -> int:
    """Copy every completed run's and audit's record.json and samples.png (never its synthetic set) from RUNS into
    the leaderboard's own records folder, keeping the run's relative path; returns how many were copied. A record
    whose ε does not recompute is copied too: the page lists it, with the reason, under "Left out"."""
    copied = 0
    for record in read_records(Path(runs)):
        if record.get("status") != "completed" or "proxy" in record.get("pair", {}).get("info", {}):
            continue
        source = Path(record["_path"]).parent
        target = Path(records_dir) / source.relative_to(Path(runs))
        for name in ("record.json", SAMPLES_NAME):
            if (source / name).exists():
                atomic_write_bytes(target / name, (source / name).read_bytes())
        copied += 1
    return copied


def build_leaderboard(runs: Path | None, output: Path, published: list[PublishedResult] = ()) -> Path:
    """Collect RUNS' completed records into OUTPUT/records (when RUNS is given), then render LEADERBOARD.md from
    OUTPUT/records alone: the committed records are the leaderboard's single source."""
    records_dir = Path(output) / RECORDS_DIR
    if runs is not None and Path(runs).exists() and Path(runs).resolve() != records_dir.resolve():
        collect_records(Path(runs), records_dir)
    records = read_records(records_dir) if records_dir.exists() else []
    links = copy_sample_grids(records, Path(output))
    path = Path(output) / "LEADERBOARD.md"
    atomic_write_bytes(path, render(records, links, published).encode())
    return path
