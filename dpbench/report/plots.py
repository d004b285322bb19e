"""Per pair: a privacy–utility plot (accuracy and FID vs ε) and a cost plot (DP fine-tune hours vs accuracy).

The series are prepared apart from the drawing, so what a plot shows can be checked without reading pixels.
PNGs are written with fixed size, dpi, style and no Software metadata: the same records give the same bytes
(on one matplotlib/freetype install)."""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dpbench.api.types import PublishedResult
from dpbench.report.frame import is_reference_epsilon
from dpbench.report.stats import Interval, mean_interval
from dpbench.run.records import epsilon_label
from dpbench.storage import atomic_write_bytes

PLOTS_DIR = "plots"
UTILITY_METRICS = ("accuracy", "fid")
DPI = 100
DODGE = 1.06  # methods sharing an ε are shifted sideways by this factor each, so their error bars stay apart


@dataclass
class Line:
    """One method's (preset, config) means over seeds at each private ε."""
    label: str
    method: str
    epsilons: list[float] = field(default_factory=list)
    intervals: list[Interval] = field(default_factory=list)


@dataclass(frozen=True)
class Reference:
    """A horizontal line: a method without DP (ε = ∞), the public-only model (ε = 0) or the real-data ceiling."""
    label: str
    method: str
    value: float
    kind: str  # "no DP", "public data only" (ε = 0) or "ceiling"


@dataclass(frozen=True)
class PublishedPoint:
    label: str
    epsilon: float
    value: float


@dataclass
class UtilitySeries:
    metric: str
    lines: list[Line]
    references: list[Reference]
    published: list[PublishedPoint]


@dataclass(frozen=True)
class CostPoint:
    label: str
    method: str
    epsilon: float
    hours: Interval
    accuracy: Interval
    device: str  # "CPU", "GPU" or "CPU/GPU"
    load: str = "alone"  # "alone": hours from the runs that ran alone; "shared"/"unknown": from every run, marked


def plot_links(pairs) -> dict[str, list[tuple[str, str]]]:
    """Each pair's (caption, relative path) of its plots, in the order the page shows them."""
    return {pair: [(f"{pair}: accuracy and FID vs ε", f"{PLOTS_DIR}/{pair}-privacy-utility.png"),
                   (f"{pair}: DP fine-tune hours vs accuracy", f"{PLOTS_DIR}/{pair}-cost.png")]
            for pair in sorted(pairs)}


def _cell_label(method: str, runs: pd.DataFrame, ambiguous: bool) -> str:
    if not ambiguous:
        return method
    return f"{method} ({runs['preset'].iloc[0]}, {runs['config'].iloc[0]}, {runs['config_hash'].iloc[0][:6]})"


def _ambiguous_methods(frame: pd.DataFrame) -> set[str]:
    """Methods with more than one (preset, config) in the frame: their labels name the config."""
    counts = frame.groupby("method")[["preset", "config_hash"]].apply(lambda g: len(g.drop_duplicates()))
    return set(counts[counts > 1].index)


def utility_series(frame: pd.DataFrame, pair: str, metric: str, published: list[PublishedResult] = ()) -> UtilitySeries:
    """What the privacy–utility panel of METRIC shows for PAIR: a line per method, the references, the published
    numbers of that pair (a published result naming no pair applies to all)."""
    runs = frame[frame["pair"] == pair]
    lines, references = [], []
    if metric in runs:
        runs = runs[runs[metric].notna()]
        ambiguous = _ambiguous_methods(runs)
        for (method, preset, config_hash), cell in runs.groupby(["method", "preset", "config_hash"], sort=True):
            label = _cell_label(method, cell, method in ambiguous)
            private = cell[~cell["epsilon"].map(is_reference_epsilon)]
            if not private.empty:
                line = Line(label, method)
                for epsilon, seeds in private.groupby("epsilon", sort=True):
                    line.epsilons.append(float(epsilon))
                    line.intervals.append(mean_interval(seeds[metric]))
                lines.append(line)
            for epsilon, seeds in cell[cell["epsilon"].map(is_reference_epsilon)].groupby("epsilon"):
                kind = "public data only" if epsilon == 0 else "no DP"
                name = f"public-only generator: {label}" if epsilon == 0 else f"{label} without DP (ε = ∞)"
                references.append(Reference(name, method, mean_interval(seeds[metric]).mean, kind))
        if metric == "accuracy" and "accuracy_real_data" in runs:
            ceiling = runs.dropna(subset=["accuracy_real_data"]).groupby("seed")["accuracy_real_data"].first()
            if not ceiling.empty:
                references.append(Reference("classifier on real private data (ceiling)", "", float(ceiling.mean()),
                                            "ceiling"))
    points = [PublishedPoint(f"published: {p.method}, {p.private_dataset}", float(p.epsilon), float(p.metrics[metric]))
              for p in published
              if metric in p.metrics and (not p.pairs or pair in p.pairs) and math.isfinite(p.epsilon) and p.epsilon > 0]
    return UtilitySeries(metric, lines, references, points)


def cost_points(frame: pd.DataFrame, pair: str) -> list[CostPoint]:
    """One point per (method, preset, config, ε) cell with a DP fine-tune time and an accuracy, the non-private
    runs included; public-only never fine-tunes. The hours are those of the runs that ran alone; a cell with none
    takes every run's and is marked by its `load`."""
    runs = frame[frame["pair"] == pair]
    if "accuracy" not in runs or "wall_finetune" not in runs:
        return []
    runs = runs.dropna(subset=["accuracy", "wall_finetune"])
    ambiguous = _ambiguous_methods(runs)
    points = []
    for (method, preset, config_hash, epsilon), cell in runs.groupby(["method", "preset", "config_hash", "epsilon"],
                                                                      sort=True):
        if epsilon == 0:
            continue
        devices = sorted(set(cell["device"]))
        alone = cell[cell["load"] == "alone"] if "load" in cell else cell
        load = "alone" if not alone.empty else ("shared" if (cell["load"] == "shared").any() else "unknown")
        timed = alone if not alone.empty else cell
        points.append(CostPoint(_cell_label(method, cell, method in ambiguous), method, float(epsilon),
                                mean_interval(timed["wall_finetune"] / 3600), mean_interval(cell["accuracy"]),
                                "/".join(devices), load))
    return points


def _colours(frame: pd.DataFrame, pair: str) -> dict[str, tuple]:
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    methods = sorted(set(frame.loc[frame["pair"] == pair, "method"]))
    return {method: palette[i % len(palette)] for i, method in enumerate(methods)}


def _errors(intervals: list[Interval], scale: float = 1.0) -> list[list[float]]:
    """Asymmetric error bars (a bootstrap interval need not be symmetric); none for a single seed."""
    low = [(i.mean - i.low) * scale if i.low is not None else 0.0 for i in intervals]
    high = [(i.high - i.mean) * scale if i.high is not None else 0.0 for i in intervals]
    return [low, high]


def _draw_utility(ax, series: UtilitySeries, colours: dict, pair: str) -> None:
    percent = 100.0 if series.metric.startswith("accuracy") else 1.0
    styles = {"public data only": [":", (0, (1, 4)), (0, (3, 2, 1, 2, 1, 2))], "no DP": ["--", (0, (6, 2))],
              "ceiling": ["-."]}
    greys = ["0.35", "0.6", "0.15"]  # public-only models (there may be one per backbone) in greys of their own
    seen: dict[str, int] = {}
    for rank, line in enumerate(series.lines):
        x = [e * DODGE ** (rank - (len(series.lines) - 1) / 2) for e in line.epsilons]
        ax.errorbar(x, [i.mean * percent for i in line.intervals], yerr=_errors(line.intervals, percent),
                    label=line.label, color=colours.get(line.method), marker="o", capsize=3, linewidth=1.5)
    for reference in series.references:
        index = seen[reference.kind] = seen.get(reference.kind, -1) + 1
        colour = greys[index % len(greys)] if reference.kind != "no DP" else colours.get(reference.method, "0.3")
        ax.axhline(reference.value * percent, color=colour, linestyle=styles[reference.kind][index % len(
            styles[reference.kind])], linewidth=1.4, label=reference.label)
    for point in series.published:
        ax.scatter([point.epsilon], [point.value * percent], marker="*", s=180, color="gold", edgecolors="black",
                   zorder=5, label=point.label)
    epsilons = sorted({e for line in series.lines for e in line.epsilons} | {p.epsilon for p in series.published})
    ax.set_xscale("log")
    if epsilons:
        ax.set_xticks(epsilons, [epsilon_label(e) for e in epsilons])
        ax.set_xlim(min(epsilons) / 1.6, max(epsilons) * 1.6)
    ax.minorticks_off()
    ax.set_xlabel("ε (log scale; δ as in each record)")
    unit = " (%)" if percent == 100 else ""
    arrow = "↑" if series.metric.startswith("accuracy") else "↓"
    ax.set_ylabel(f"{series.metric}{unit} {arrow}")
    ax.set_title(f"{pair}: {series.metric} vs ε")
    ax.grid(True, alpha=0.3)
    if not (series.lines or series.references or series.published):
        ax.text(0.5, 0.5, f"no {series.metric} yet", transform=ax.transAxes, ha="center", va="center")


def _png(figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _legend_below(figure, axes) -> None:
    handles, labels = {}, []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    if labels:
        figure.legend([handles[label] for label in labels], labels, loc="lower center", ncols=3, fontsize=8,
                      frameon=False)


def privacy_utility_png(frame: pd.DataFrame, pair: str, published: list[PublishedResult] = ()) -> bytes:
    from matplotlib import style
    from matplotlib.figure import Figure

    with style.context("default"):
        figure = Figure(figsize=(12, 6))
        axes = figure.subplots(1, len(UTILITY_METRICS))
        colours = _colours(frame, pair)
        for ax, metric in zip(axes, UTILITY_METRICS):
            _draw_utility(ax, utility_series(frame, pair, metric, published), colours, pair)
        figure.text(0.5, 0.965, "mean over seeds, error bars: 95% CI (none for one seed); horizontal lines: "
                    "references; stars: published numbers (their own settings)", ha="center", fontsize=8)
        figure.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.25, wspace=0.22)
        _legend_below(figure, axes)
        return _png(figure)


def cost_png(frame: pd.DataFrame, pair: str) -> bytes:
    from matplotlib import style
    from matplotlib.figure import Figure

    points = cost_points(frame, pair)
    devices = sorted({d for p in points for d in p.device.split("/")}) or ["CPU"]
    with style.context("default"):
        figure = Figure(figsize=(9, 5.5))
        ax = figure.subplots()
        colours = _colours(frame, pair)
        for point in points:
            private = math.isfinite(point.epsilon)
            ax.errorbar([point.hours.mean], [point.accuracy.mean * 100], yerr=_errors([point.accuracy], 100),
                        xerr=_errors([point.hours]), color=colours.get(point.method),
                        marker="o" if private else "s",
                        markerfacecolor="white" if len(devices) > 1 and "GPU" not in point.device else None,
                        capsize=3, linestyle="none", alpha=1.0 if point.load == "alone" else 0.45,
                        label=point.label if point.load == "alone" else f"{point.label} (load {point.load})")
            ax.annotate(f"ε = {epsilon_label(point.epsilon)}" if private else "ε = ∞", (point.hours.mean, point.accuracy.mean * 100),
                        textcoords="offset points", xytext=(6, 4), fontsize=8)
        hollow = " (hollow: CPU, filled: GPU)" if len(devices) > 1 else ""
        ax.set_xlabel(f"DP fine-tune hours ({' or '.join(devices)}){hollow}, mean over seeds")
        ax.set_ylabel("accuracy (%) ↑")
        ax.margins(x=0.1, y=0.08)  # room for the ε labels beside the outermost points
        ax.set_title(f"{pair}: fine-tune cost vs accuracy (squares: ε = ∞, no DP; error bars: 95% CI)\n"
                     "faded: no run of the cell ran alone, its time includes other load", fontsize=10)
        ax.grid(True, alpha=0.3)
        if not points:
            ax.text(0.5, 0.5, "no fine-tuned runs with an accuracy yet", transform=ax.transAxes, ha="center")
        figure.subplots_adjust(left=0.09, right=0.98, top=0.92, bottom=0.2)
        _legend_below(figure, [ax])
        return _png(figure)


def write_plots(frame: pd.DataFrame, output: Path, published: list[PublishedResult] = ()) -> dict[str, list]:
    """Draw every pair's plots under OUTPUT/plots/; returns plot_links for the pairs drawn."""
    pairs = sorted(set(frame["pair"])) if not frame.empty else []
    links = plot_links(pairs)
    for pair in pairs:
        (_, utility), (_, cost) = links[pair]
        atomic_write_bytes(Path(output) / utility, privacy_utility_png(frame, pair, published))
        atomic_write_bytes(Path(output) / cost, cost_png(frame, pair))
    return links
