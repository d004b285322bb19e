"""The tables at the top of a pair's leaderboard section: the method × ε summaries of accuracy and FID (ranked,
≤ 8 columns), the seed-paired comparisons, the references (once per pair) and the costs."""
from __future__ import annotations

import math

import pandas as pd
from tabulate import tabulate

from dpbench.api.types import PublishedResult
from dpbench.report.frame import is_reference_epsilon
from dpbench.report.pairwise import Difference, PairComparison, Ranking
from dpbench.report.stats import mean_interval
from dpbench.run.records import epsilon_label

MAX_EPSILON_COLUMNS = 4  # method + 4 ε + mean rank + area + commits = 8 columns; more ε split the table
SCALE = {"accuracy": 100.0}  # accuracy is shown in percentage points


def _number(value: float, metric: str, signed: bool = False) -> str:
    return format(value * SCALE.get(metric, 1.0), "+.1f" if signed else ".1f")


def commits_of(runs: pd.DataFrame) -> list[str]:
    return sorted(set(runs["commit"])) if "commit" in runs else []


def mixed_commits_note(runs: pd.DataFrame) -> list[str]:
    commits = commits_of(runs)
    if len(commits) < 2:
        return []
    return [f"This table mixes {len(commits)} code versions ({', '.join(commits)}): rows from different commits may "
            "differ for that reason alone.", ""]


def summary_cell(seeds: pd.Series, metric: str, ranking: Ranking | None, line: str) -> str:
    """"74.1 ± 11.6 (n=3)": the mean, the 95% CI half-width and the seeds; bold for the best ranked mean unless an
    unranked line (one seed) has a better one, "tied" for a line tied with it, "n/a" for a line whose comparison with a leader had too few shared seeds."""
    interval = mean_interval(seeds.dropna())
    if interval is None:
        return "–"
    mean = _number(interval.mean, metric)
    if ranking is not None and ranking.best == line and ranking.best_is_top:
        mean = f"**{mean}**"
    text = mean + (f" ± {_number(interval.half_width, metric)}" if interval.half_width is not None else "")
    text += f" (n={interval.n})"
    if ranking is not None and line in ranking.tied_with_best:
        text += " tied"
    elif ranking is not None and line in ranking.unranked and interval.n >= 2:
        text += " n/a"
    return text


def summary_tables(runs: pd.DataFrame, comparison: PairComparison, metric: str, higher_is_better: bool) -> list[str]:
    """Method × private-ε table(s) of METRIC for one pair; lines in order of their mean rank."""
    private = runs[~runs["epsilon"].map(is_reference_epsilon)]
    if metric not in private or private[metric].dropna().empty:
        return []
    private = private[private[metric].notna()]
    epsilons = sorted(set(private["epsilon"]))
    summaries = comparison.summaries
    mean_ranks, field_size = {}, {}
    for label in set(private["line"]):
        ranked = [r for (m, _), r in comparison.rankings.items() if m == metric and r.ranks.get(label)]
        mean_ranks[label] = (sum(r.ranks[label] for r in ranked) / len(ranked), len(ranked)) if ranked else (None, 0)
        # how many lines it was ranked among (the most over its ε): rank 1 of 1 says little
        field_size[label] = max((sum(v is not None for v in r.ranks.values()) for r in ranked), default=0)
    order = sorted(set(private["line"]), key=lambda label: (mean_ranks[label][0] or math.inf, label))
    unit = " (%)" if metric in SCALE else ""
    lines = []
    for start in range(0, len(epsilons), MAX_EPSILON_COLUMNS):
        chunk = epsilons[start:start + MAX_EPSILON_COLUMNS]
        headers = ["method"] + [f"ε = {epsilon_label(e)}" for e in chunk] + ["mean rank"]
        headers += ["mean acc. over ε (trapezoid)"] if metric == "accuracy" else []
        headers += ["commit(s)"]
        body = []
        for label in order:
            cells = private[private["line"] == label]
            row = [label]
            for epsilon in chunk:
                seeds = cells.loc[cells["epsilon"] == epsilon].groupby("seed")[metric].first()
                row.append(summary_cell(seeds, metric, comparison.rankings.get((metric, epsilon)), label)
                           if not seeds.empty else "–")
            mean_rank, count = mean_ranks[label]
            row.append("–" if mean_rank is None else
                       f"{mean_rank:.1f} of {field_size[label]}"
                       + ("" if count == len(epsilons) else f" (at {count} of {len(epsilons)} ε)"))
            if metric == "accuracy":
                summary = summaries.get(label)
                row.append("–" if summary is None or summary.area is None else
                           f"{_number(summary.area, metric)} (ε {epsilon_label(summary.area_epsilons[0])}–"
                           f"{epsilon_label(summary.area_epsilons[-1])})")
            row.append(", ".join(commits_of(cells)))
            body.append(row)
        arrow = "↑" if higher_is_better else "↓"
        lines += [f"**{metric}{unit} {arrow}**, mean ± 95% CI half-width (n = seeds)", "",
                  tabulate(body, headers=headers, tablefmt="github", disable_numparse=True), ""]
    return lines + mixed_commits_note(private)


def _signed_interval(d: Difference) -> str:
    if d.mean is None:
        return "–"
    text = _number(d.mean, d.metric, signed=True)
    if d.low is not None:
        text += f" [{_number(d.low, d.metric, signed=True)}, {_number(d.high, d.metric, signed=True)}]"
    return text


def _verdict(d: Difference | None) -> str:
    if d is None:
        return "–"
    if d.verdict == "n/a":
        return f"n/a ({d.reason})"
    return {"better": f"{d.first} better", "worse": f"{d.second} better", "tied": "tied"}[d.verdict]


def pairwise_table(comparison: PairComparison) -> list[str]:
    """Every two lines at every private ε: the seed-paired accuracy and FID differences (first − second, 95% CI)
    and the verdicts."""
    found = {(d.epsilon, d.first, d.second, d.metric): d for d in comparison.differences}
    keys = sorted({(e, a, b) for e, a, b, _ in found})
    if not keys:
        return []
    body = []
    for epsilon, first, second in keys:
        acc, fid = found.get((epsilon, first, second, "accuracy")), found.get((epsilon, first, second, "fid"))
        shared = max((d.n for d in (acc, fid) if d is not None), default=0)
        body.append([epsilon_label(epsilon), f"{first} − {second}",
                     _signed_interval(acc) if acc else "–", _verdict(acc),
                     _signed_interval(fid) if fid else "–", _verdict(fid), shared])
    headers = ["ε", "first − second", "Δ accuracy (points) [95% CI]", "accuracy", "Δ FID [95% CI]", "FID",
               "shared seeds"]
    return [tabulate(body, headers=headers, tablefmt="github", disable_numparse=True), ""]


def _per_seed(runs: pd.DataFrame, metric: str) -> pd.Series:
    """A reference measured once per seed (the same for every run of that seed)."""
    if metric not in runs:
        return pd.Series(dtype=float)
    return runs.dropna(subset=[metric]).groupby("seed")[metric].first()


def _reference_row(label: str, runs: pd.DataFrame | None, what: str, accuracy: pd.Series | None = None) -> list:
    accuracy = accuracy if accuracy is not None else (runs["accuracy"] if runs is not None and "accuracy" in runs
                                                      else pd.Series(dtype=float))
    fid = runs["fid"] if runs is not None and "fid" in runs else pd.Series(dtype=float)
    cells = []
    for values, metric in ((accuracy, "accuracy"), (fid, "fid")):
        interval = mean_interval(values.dropna())
        cells.append("–" if interval is None else _number(interval.mean, metric)
                     + (f" ± {_number(interval.half_width, metric)}" if interval.half_width is not None else "")
                     + f" (n={interval.n})")
    commits = ", ".join(commits_of(runs)) if runs is not None else "–"
    return [label, *cells, commits, what]


def references_table(runs: pd.DataFrame, published: list[PublishedResult], pair: str,
                     outside: set[str] = frozenset()) -> list[str]:
    """The pair's references, once: public-only generators (ε = 0), each method without DP (ε = ∞), the
    downstream classifier trained on the public split and on real private data (the ceiling), published numbers.
    A reference computed outside the ε guarantee (in OUTSIDE) says so."""
    body = []
    for label, cell in runs[runs["epsilon"] == 0].groupby("line", sort=True):
        body.append(_reference_row(f"public-only generator: {label} (ε = 0)", cell,
                                   "a generator trained on the public split only; no private data"))
    for label, cell in runs[runs["epsilon"].map(math.isinf)].groupby("line", sort=True):
        body.append(_reference_row(f"{label} without DP (ε = ∞)", cell,
                                   "the same method on the private split, no clipping or noise"))
    private = runs[~runs["epsilon"].map(is_reference_epsilon)]
    public = _per_seed(private, "accuracy_public_only")
    if not public.empty:
        body.append(_reference_row("classifier on public data", None,
                                   "the downstream classifier trained on the public split, no generator", public))
    ceiling = _per_seed(runs, "accuracy_real_data")
    if not ceiling.empty:
        mark = "; **outside the ε guarantee**" if "accuracy_real_data" in outside else ""
        body.append(_reference_row("classifier on real private data (ceiling)", None,
                                   "trained on as many real private-train images as a synthetic set has" + mark,
                                   ceiling))
    for p in published:
        if p.pairs and pair not in p.pairs:
            continue
        cells = [format(p.metrics[m] * SCALE.get(m, 1.0), ".1f") if m in p.metrics else "–"
                 for m in ("accuracy", "fid")]
        body.append([f"**{p.method}**", *cells, "–",
                     f"{p.private_dataset}, ε = {epsilon_label(p.epsilon)}, δ = {p.delta:g}; {p.setting}; {p.source}"])
    if not body:
        return []
    headers = ["reference", "accuracy (%) ↑", "FID ↓", "commit(s)", "what it is"]
    return [tabulate(body, headers=headers, tablefmt="github", disable_numparse=True), ""]


def classifier_caption(runs: pd.DataFrame) -> list[str]:
    """Why a DP classifier baseline can beat every generator here: it needs no generator."""
    if "produces" not in runs:
        return []
    classifiers = runs[runs["produces"] == "classifier"]
    if classifiers.empty:
        return []
    names = ", ".join(sorted(set(classifiers["line"])))
    n = classifiers["n_private_train"].dropna()
    size = f"the {int(n.iloc[0]):,} private training images" if not n.empty else "the private training split"
    reference = classifiers["method_reference"].iloc[0]
    return [f"*{names}* is a baseline, not a generator: a DP classifier trained directly on {size}"
            + (f" ({reference})" if reference else "") + ". At this scale a classifier trained on the private "
            "images themselves needs no generator, so it can beat every generator; published comparisons that "
            "rank generators above it were made at other scales (see the references).", ""]


def _load_mark(loads: pd.Series) -> str:
    """"alone 3/3", "shared 2/3, unknown 1/3", ..."""
    counts = loads.value_counts()
    return ", ".join(f"{status} {counts[status]}/{len(loads)}" for status in ("alone", "shared", "unknown")
                     if status in counts)


def _time_cell(cell: pd.DataFrame, column: str) -> str:
    """Mean ± 95% CI over the runs that ran alone; over every run, marked, when none did."""
    alone = cell[cell["load"] == "alone"]
    values = (alone if not alone.empty else cell)[column].dropna()
    interval = mean_interval(values)
    if interval is None:
        return "–"
    text = format(interval.mean, ".0f") + (f" ± {interval.half_width:.0f}" if interval.half_width is not None else "")
    text += f" (n={interval.n})"
    if alone.empty:
        text += " *(shared)*" if (cell["load"] == "shared").any() else " *(load unknown)*"
    return text


def _benchmark_cell(cell: pd.DataFrame, times: dict[str, tuple[float, int]]) -> str:
    """The benchmark's seconds per DP step for the cell's scope (else its method), at the benchmark's batch."""
    scope = cell["scope"].dropna().iloc[0] if "scope" in cell and cell["scope"].notna().any() else None
    entry = times.get(scope) or times.get(cell["method"].iloc[0])
    return "–" if entry is None else f"{entry[0]:.3f} @ {entry[1]}"


def costs_table(runs: pd.DataFrame, times: dict[str, tuple[float, int]] | None = None,
                source: str | None = None) -> list[str]:
    """A row per (line, ε): the DP work (steps × batch) and the benchmark's per-step time (TIMES, from the file
    SOURCE), which load cannot distort; the timings from the runs that ran alone (marked when none did), memory
    and trainable parameters."""
    times = times or {}
    body = []
    for (epsilon, label), cell in runs.groupby(["epsilon", "line"], sort=True):
        examples = cell["examples"].dropna() if "examples" in cell else pd.Series(dtype=float)
        fraction = cell["trainable_fraction"].dropna()
        params = cell["trainable_parameters"].dropna()
        body.append([label, epsilon_label(epsilon),
                     "–" if examples.empty else format(int(examples.iloc[0]), ","),
                     "–" if is_reference_epsilon(epsilon) else _benchmark_cell(cell, times),
                     _time_cell(cell, "wall_finetune"), _time_cell(cell, "wall_total"),
                     "–" if cell["peak_memory_mb"].dropna().empty else format(cell["peak_memory_mb"].mean(), ".0f"),
                     "–" if params.empty else f"{params.iloc[0]:,.0f} ({format(fraction.iloc[0], '.2%')})"
                     if not fraction.empty else f"{params.iloc[0]:,.0f}",
                     _load_mark(cell["load"])])
    if not body:
        return []
    headers = ["method", "ε", "steps × batch", "DP step s @ batch (benchmark)", "DP fine-tune s", "run wall s",
               "peak MB", "trainable params", "load"]
    note = ([f"DP step s: seconds per DP step of the method's scope at that batch on a quiet machine, from "
             f"benchmarks/{source} (`benchmarks/dp_step.py`), not from these runs.", ""] if source else [])
    return [tabulate(body, headers=headers, tablefmt="github", disable_numparse=True), ""] + note

