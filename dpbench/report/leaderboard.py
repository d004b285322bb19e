"""Build leaderboard/LEADERBOARD.md (or .html, .csv) from run records: per pair its plots and a table per ε, each
cell the mean ± 95% confidence interval over seeds."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from dpbench.api.types import PublishedResult
from dpbench.report.collect import collect_records
from dpbench.report.frame import is_reference_epsilon, metric_format, metric_order, records_frame
from dpbench.report.recheck import partition
from dpbench.report.stats import format_interval, mean_interval
from dpbench.run.records import SAMPLES_NAME, decode_number, epsilon_label, read_records
from dpbench.storage import atomic_write_bytes

RECORDS_DIR = "records"  # under the leaderboard folder: the committed records it is rendered from
FORMATS = {"md": "LEADERBOARD.md", "html": "LEADERBOARD.html", "csv": "LEADERBOARD.csv", "sqlite": "leaderboard.sqlite"}
COST_COLUMNS = [("trainable_parameters", "trainable params"), ("trainable_fraction", "trainable %"),
                ("wall_finetune", "DP fine-tune s"), ("wall_total", "run wall s"), ("peak_memory_mb", "peak MB")]


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


def _cell(values: pd.Series, fmt: str, *, with_n: bool = True) -> str:
    return format_interval(mean_interval(values.dropna()), fmt, with_n=with_n)


def _config_value(values: pd.Series, fmt: str) -> str:
    values = values.dropna()
    return "–" if values.empty else format(values.iloc[0], fmt)


def _metric_cell(runs: pd.DataFrame, metric: str) -> str:
    """Mean ± 95% CI (n = seeds); FID with its sample count, KID with torch-fidelity's subset std."""
    if metric not in runs or runs[metric].dropna().empty:
        return "–"
    text = _cell(runs[metric], metric_format(metric))
    if metric == "fid" and "fid_samples" in runs and runs["fid_samples"].notna().any():
        counts = sorted({int(c) for c in runs["fid_samples"].dropna()})
        text += f" @ {'/'.join(format(c, ',') for c in counts)} samples"
    if metric == "kid" and "kid_std" in runs:
        measured = runs[runs["kid"].notna()]
        if "kid_subset_is_whole_set" in measured and measured["kid_subset_is_whole_set"].fillna(False).all():
            text += "; std n/a (subset = n)"
        elif measured["kid_std"].notna().any():
            text += f"; std {format(measured['kid_std'].mean(), '.2g')}"
    return text


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
        row += [_metric_cell(runs, m) for m in metrics]
        row += [  # the parameter counts are the config's own, the same for every seed
            _config_value(runs["trainable_parameters"], ",.0f"), _config_value(runs["trainable_fraction"], ".2%"),
            _cell(runs["wall_finetune"], ".0f", with_n=False), _cell(runs["wall_total"], ".0f", with_n=False),
            _cell(runs["peak_memory_mb"], ".0f", with_n=False),
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
    row += [_cell(per_seed, metric_format(m)) if m == "accuracy" else "–" for m in metrics]
    return row + ["–"] * (width - len(row))


def _published_section(published: list[PublishedResult]) -> list[str]:
    lines = ["## Published reference numbers", "",
             "Marked references from the seed papers, in *their* settings (not dpbench runs); compare with care.", ""]
    body = [[f"**{p.method}**", p.private_dataset, epsilon_label(p.epsilon), p.delta,
             ", ".join(f"{k}={format(v, metric_format(k))}" for k, v in p.metrics.items()), p.setting, p.source]
            for p in published]
    lines.append(tabulate(body, headers=["method", "private data", "ε", "δ", "metrics", "setting", "source"], tablefmt="github"))
    return lines


INTRODUCTION = (
    "Generated by `dpbench leaderboard` from the run records; do not edit by hand. "
    "Cells are the mean over seeds ± the half-width of its 95% confidence interval (Student t, n − 1 degrees of "
    "freedom), or the bootstrap percentile interval [low, high] of the mean from 5 seeds on, then the number of seeds "
    "(n = 1: the value alone, no interval). FID is followed by the number of generated samples it was computed on; "
    "KID by torch-fidelity's std over its random subsets within a run (mean over seeds), \"n/a (subset = n)\" for "
    "records whose subsets were the whole sample set (no spread to measure). "
    "Cost columns are mean ± 95% CI too. ↑: higher is better, ↓: lower is better. "
    "Each pair's privacy–utility plot draws accuracy and FID against ε, a line per method with the same intervals "
    "as error bars, the public-only model, the non-private runs and the real-data ceiling as horizontal lines and "
    "published numbers as stars; its cost plot draws each cell's DP fine-tune hours against its accuracy. "
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
    "canary count; a bound above the claimed ε is flagged.")


def trusted_frame(records: list[dict]) -> tuple[pd.DataFrame, dict[str, bool], list[dict], list[str]]:
    """(frame, metric directions, kept records, left-out descriptions): every record's ε is recomputed first."""
    kept, refused = partition(records)
    if refused:
        warnings.warn(f"left out {len(refused)} record(s) whose ε does not recompute: {'; '.join(refused)}",
                      stacklevel=3)
    frame, direction = records_frame(kept)
    return frame, direction, kept, refused


def _pair_sections(pair: str, runs: pd.DataFrame, direction: dict[str, bool], sample_links: dict, audits: dict,
                   plots: list[tuple[str, str]]) -> list[str]:
    lines = []
    if plots:
        lines += [f"## {pair}, plots", ""] + [f"![{caption}]({link})\n" for caption, link in plots]
    is_reference = runs["epsilon"].map(is_reference_epsilon)
    references, private = runs[is_reference], runs[~is_reference]
    groups = [(f"ε = {epsilon_label(e)}", pd.concat([g, references])) for e, g in private.groupby("epsilon")]
    if not groups:
        groups = [("references only", references)]
    for title, group in groups:
        metrics = [m for m in metric_order(direction) if m in group and group[m].notna().any()]
        lines += [f"## {pair}, {title}", "", _table(group, metrics, direction, pair, sample_links, audits), ""]
    return lines


def render(records: list[dict], sample_links: dict | None = None, published: list[PublishedResult] = (),
           plot_links: dict[str, list[tuple[str, str]]] | None = None) -> str:
    """LEADERBOARD.md's text; PLOT_LINKS (pair -> [(caption, relative path)]) embeds each pair's plots."""
    frame, direction, kept, refused = trusted_frame(records)
    audits = latest_audits(kept)
    sample_links, plot_links = sample_links or {}, plot_links or {}
    lines = ["# dpbench leaderboard", "", INTRODUCTION, ""]
    if frame.empty:
        lines.append("No completed runs yet.")
    else:
        for pair, runs in frame.groupby("pair", sort=True):
            lines += _pair_sections(pair, runs, direction, sample_links, audits, plot_links.get(pair, []))
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
    """Copy each cell's lowest-seed sample grid next to the leaderboard; returns the relative links. A grid left
    in OUTPUT/samples by a cell no record holds any more (a removed or superseded run) is deleted, so the folder
    shows exactly the grids the page links to."""
    links = {}
    for key, (grid, relative) in sample_grid_sources(records).items():
        atomic_write_bytes(Path(output) / relative, grid.read_bytes())
        links[key] = relative
    linked = {Path(relative) for relative in links.values()}
    samples = Path(output) / "samples"
    for stale in (samples.rglob("*.png") if samples.is_dir() else ()):
        if stale.relative_to(output) not in linked:
            stale.unlink()
    return links


def compared_records(folders: list[Path], records_dir: Path) -> list[dict]:
    """The records of each --compare-to folder, read in place (never written). Each method is renamed
    `<method>@<folder>` (e.g. dp-loda@leaderboard-records), so that every table, plot and ranking shows it as a
    row of its own, never merged with or replacing one of OUTPUT's own runs. The output's records folder is not
    compared with itself."""
    records = []
    for folder in folders:
        if Path(folder).resolve() == Path(records_dir).resolve():
            continue
        tag = "-".join(Path(folder).resolve().parts[-2:])
        records += [{**record, "_source": str(folder), "_method": record["method"]["name"],
                     "method": {**record["method"], "name": f"{record['method']['name']}@{tag}"}}
                    for record in read_records(folder)]
    return records


def build_leaderboard(runs: Path | list[Path] | None, output: Path, published: list[PublishedResult] = (),
                      fmt: str = "md", compare_to: list[Path] = ()) -> Path:
    """Merge the completed records of the RUNS roots into OUTPUT/records (when given), then render the leaderboard
    from OUTPUT/records (the committed records are its single source) and the COMPARE_TO folders' records, which
    are read in place as rows of their own: sample grids to OUTPUT/samples, plots to OUTPUT/plots, and
    OUTPUT/LEADERBOARD.<fmt> (or OUTPUT/leaderboard.sqlite: every record as rows, docs/record.md)."""
    from dpbench.report.plots import write_plots

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    output = Path(output)
    records_dir = output / RECORDS_DIR
    if runs is not None:
        collect_records(runs, records_dir)
    records = (read_records(records_dir) if records_dir.exists() else []) + compared_records(compare_to, records_dir)
    path = output / FORMATS[fmt]
    if fmt == "sqlite":
        from dpbench.report.sqlite_export import write_sqlite

        write_sqlite(records, path)
        return path
    links = copy_sample_grids(records, output)
    if fmt == "csv":
        from dpbench.report.csv_export import leaderboard_csv

        frame, direction, _, _ = trusted_frame(records)
        atomic_write_bytes(path, leaderboard_csv(frame, direction).encode())
        return path
    with warnings.catch_warnings():  # render() warns about the left-out records, once
        warnings.simplefilter("ignore")
        frame = trusted_frame(records)[0]
    plots = write_plots(frame, output, published)
    markdown = render(records, links, published, plots)
    if fmt == "md":
        atomic_write_bytes(path, markdown.encode())
    else:
        from dpbench.report.html import markdown_page_to_html

        atomic_write_bytes(path, markdown_page_to_html(markdown, output).encode())
    return path
