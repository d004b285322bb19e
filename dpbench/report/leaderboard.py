"""Build leaderboard/LEADERBOARD.md (or .html, .csv) from run records: per pair its plots, the ranked method × ε
summaries, the seed-paired comparisons, the references, a details table per ε and the costs. How to read it:
docs/leaderboard.md."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from dpbench.api.types import PublishedResult
from dpbench.report.collect import collect_records
from dpbench.report.frame import (
    MEMORISATION_METRICS, OUTSIDE_ATTR, metric_format, metric_order, records_frame, withheld_reason,
)
from dpbench.report.pairwise import compare_pair, pair_runs
from dpbench.report.recheck import partition
from dpbench.report.stats import format_interval, mean_interval
from dpbench.report.step_times import step_times
from dpbench.report.summary import (
    classifier_caption, costs_table, mixed_commits_note, pairwise_table, references_table, summary_tables,
)
from dpbench.run.curves import CURVES_PNG
from dpbench.run.records import SAMPLES_NAME, decode_number, epsilon_label, read_records
from dpbench.storage import atomic_write_bytes

RECORDS_DIR = "records"  # under the leaderboard folder: the committed records it is rendered from
FORMATS = {"md": "LEADERBOARD.md", "html": "LEADERBOARD.html", "csv": "LEADERBOARD.csv", "sqlite": "leaderboard.sqlite"}
PAIRWISE_CSV = "LEADERBOARD-pairwise.csv"  # written beside LEADERBOARD.csv: the seed-paired verdicts
REFERENCE_METRICS = ("accuracy_real_data", "accuracy_public_only")  # in the references table, not the details


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


def _copies_cell(runs: pd.DataFrame) -> str:
    """The mean share of synthetic images that nearly copy a private training image (and, beside it, a private test
    image, which no run saw), and how many runs were flagged."""
    if "copies_train_fraction" not in runs or runs["copies_train_fraction"].dropna().empty:
        return "–"
    text = format(runs["copies_train_fraction"].mean(), ".1%")
    if "copies_test_fraction" in runs and runs["copies_test_fraction"].notna().any():
        text += f" (test {runs['copies_test_fraction'].mean():.1%})"  # the same ratio against unseen images
    flagged = int(runs["copies_flagged"].fillna(0).astype(bool).sum()) if "copies_flagged" in runs else 0
    return text + (f" (flagged {flagged}/{len(runs)})" if flagged else "")


def _samples_cell(runs: pd.DataFrame, link: str | None) -> str:
    withheld = runs["withheld"].dropna() if "withheld" in runs else pd.Series(dtype=object)
    if not withheld.empty:
        return f"withheld: {withheld.iloc[0]}"
    if not link:
        return "–"
    grid, curves = link
    return f"[png]({grid})" + (f" · [curves]({curves})" if curves else "")


def _table(group: pd.DataFrame, metrics: list[str], direction: dict[str, bool], pair: str = "",
           sample_links: dict | None = None, audits: dict | None = None, outside: set[str] = frozenset()) -> str:
    """The details of one ε: a row per (method, preset, config), every metric with its seeds; a metric outside the
    ε guarantee says so in its header."""
    sample_links, audits = sample_links or {}, audits or {}
    mark = {m: " (outside ε)" if m in outside else "" for m in [*metrics, "copies_train_fraction"]}
    headers = (["method", "preset", "config", "seeds", "noise"]
               + [f"{m} {'↑' if direction[m] else '↓'}{mark[m]}" for m in metrics]
               + [f"copies{mark['copies_train_fraction']}", "commit(s)", "audit (95%)", "samples"])
    body = []
    for (epsilon, method, preset, config_hash), runs in group.groupby(["epsilon", "method", "preset", "config_hash"],
                                                                       sort=True):
        noise = "–" if epsilon == 0 or math.isinf(epsilon) else "/".join(sorted(set(runs["noise"])))
        row = [method, preset, f"{runs['config'].iloc[0]} ({config_hash[:6]})", len(runs), noise]
        row += [_metric_cell(runs, m) for m in metrics]
        row += [_copies_cell(runs), ", ".join(sorted(set(runs["commit"])))]
        row.append(audit_label(audits.get((pair, method, preset, epsilon))))
        row.append(_samples_cell(runs, sample_links.get((pair, method, preset, config_hash, epsilon))))
        body.append(row)
    return tabulate(body, headers=headers, tablefmt="github")


INTRODUCTION = (
    "Generated by `dpbench leaderboard` from the run records; do not edit by hand. How to read it (intervals, "
    "verdicts, ranks, references, costs): docs/leaderboard.md. Per pair: the plots; the accuracy and FID of each "
    "method at each ε, ranked; every two methods compared on the seeds both ran; the references; the details of "
    "each ε; the costs. **seeded** noise rows are reproducible simulations of DP, fit to compare methods but not to "
    "release a model.")


def trusted_frame(records: list[dict]) -> tuple[pd.DataFrame, dict[str, bool], list[dict], list[str]]:
    """(frame, metric directions, kept records, left-out descriptions): every record's ε is recomputed first."""
    kept, refused = partition(records)
    if refused:
        warnings.warn(f"left out {len(refused)} record(s) whose ε does not recompute: {'; '.join(refused)}",
                      stacklevel=3)
    frame, direction = records_frame(kept)
    return frame, direction, kept, refused


def _pair_sections(pair: str, frame: pd.DataFrame, direction: dict[str, bool], sample_links: dict, audits: dict,
                   plots: list[tuple[str, str]], published: list[PublishedResult]) -> list[str]:
    runs = pair_runs(frame, pair)
    comparison = compare_pair(runs, direction)
    lines = [f"## {pair}", ""]
    if plots:
        lines += [f"![{caption}]({link})\n" for caption, link in plots]
    lines += [f"### {pair}: summary", ""]
    lines += ["Only methods with two seeds or more are ranked. **bold**: the best mean at that ε, when it is ranked; "
              "tied: its seed-paired 95% interval with the best covers 0; n/a: too few seeds shared with a better "
              "method to rank; mean rank: over the ε where the method is ranked (1 = best), of k: among how many.", ""]
    for metric in ("accuracy", "fid"):
        if metric in direction:
            lines += summary_tables(runs, comparison, metric, direction[metric])
    lines += classifier_caption(runs)
    table = pairwise_table(comparison)
    if table:
        lines += [f"### {pair}: pairwise, seed-paired 95% intervals", ""] + table
    outside = set(frame.attrs.get(OUTSIDE_ATTR, []))
    table = references_table(runs, list(published), pair, outside)
    if table:
        lines += [f"### {pair}: references", ""] + table
    for epsilon, group in runs.groupby("epsilon", sort=True):
        metrics = [m for m in metric_order(direction) if m in group and group[m].notna().any()
                   and m not in REFERENCE_METRICS and m not in MEMORISATION_METRICS]
        lines += [f"### {pair}, ε = {epsilon_label(epsilon)}: details", "",
                  _table(group, metrics, direction, pair, sample_links, audits, outside), ""]
        lines += mixed_commits_note(group)
    lines += [f"### {pair}: costs", "",
              "Timings are the mean ± 95% CI over the runs that ran alone; when none did, over every run, marked "
              "*(shared)* or *(load unknown)*. steps × batch is the DP work itself, which load cannot distort.", ""]
    return lines + costs_table(runs, *step_times())


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
        for pair in sorted(set(frame["pair"])):
            lines += _pair_sections(pair, frame, direction, sample_links, audits, plot_links.get(pair, []), published)
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
        if withheld_reason(record):  # a withheld grid is never copied next to the page
            continue
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


def page_links(records: list[dict], sources: dict | None = None) -> dict[tuple, tuple[str, str | None]]:
    """Each cell's links on the page: its lowest-seed sample grid, and that run's training curves (or None)."""
    links = {}
    for key, (grid, relative) in (sources or sample_grid_sources(records)).items():
        curves = Path("curves", *Path(relative).parts[1:]).as_posix() if grid.with_name(CURVES_PNG).exists() else None
        links[key] = (relative, curves)
    return links


def copy_sample_grids(records: list[dict], output: Path) -> dict[tuple, tuple[str, str | None]]:
    """Copy each cell's lowest-seed sample grid, and that run's curves.png where it has one, next to the
    leaderboard; returns page_links. A file left in OUTPUT/samples or OUTPUT/curves by a cell no record holds any
    more (a removed or superseded run) is deleted, so the folders show exactly the files the page links to."""
    sources = sample_grid_sources(records)
    links = page_links(records, sources)
    for key, (grid, _) in sources.items():
        relative, curves = links[key]
        atomic_write_bytes(Path(output) / relative, grid.read_bytes())
        if curves:
            atomic_write_bytes(Path(output) / curves, grid.with_name(CURVES_PNG).read_bytes())
    linked = {Path(relative) for pair in links.values() for relative in pair if relative}
    for folder in (Path(output) / "samples", Path(output) / "curves"):
        for stale in (folder.rglob("*.png") if folder.is_dir() else ()):
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
        from dpbench.report.csv_export import leaderboard_csv, pairwise_csv

        frame, direction, _, _ = trusted_frame(records)
        atomic_write_bytes(path, leaderboard_csv(frame, direction).encode())
        atomic_write_bytes(output / PAIRWISE_CSV, pairwise_csv(frame, direction).encode())
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
