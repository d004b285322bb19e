"""A run's training curves: every DP stage's per-step statistics as `curves.csv`, plotted as `curves.png`.

Columns of curves.csv (one row per `stride` steps of a stage, at most privacy.step_statistics.ROW_BUDGET a stage):

- `stage`: the engine's index in the run (0 for the first DP stage); `step`: steps of that stage taken so far.
- `epsilon_spent`: ε of the run's earlier stages (as planned) plus this stage's first `step` steps, by the stage's
  accountant. From public values only (σ, q, steps, δ): covered by ε.
- `released_grad_norm`: the norm of the released (noised) gradient sum, root mean square over the row's steps.
  Post-processing of what DP-SGD releases: covered by ε.
- `noise_to_signal`: the noise's norm σC√d over the clipped sum's norm as estimated from the released sum
  (privacy.step_statistics): covered by ε. `inf` when the signal is below what the released sum can show; 0 for
  a non-private stage (no noise).
- `loss_outside_dp`: the training loss on a few of the row's last step's private examples. NOT covered by ε.
- `clip_fraction_outside_dp`: the fraction of the row's private examples whose gradient was clipped. NOT covered
  by ε.

Columns ending in `_outside_dp` are statistics of the private data that the run's DP guarantee does not cover:
diagnostics for whoever runs the benchmark, not to be published with the model.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from dpbench.privacy.accountant import epsilon_of_history
from dpbench.storage import atomic_write_bytes

CURVES_CSV = "curves.csv"
CURVES_PNG = "curves.png"
COLUMNS = ("stage", "step", "epsilon_spent", "released_grad_norm", "noise_to_signal", "loss_outside_dp",
           "clip_fraction_outside_dp")
OUTSIDE_DP = tuple(c for c in COLUMNS if c.endswith("_outside_dp"))


def curve_rows(trainers, delta: float) -> list[dict]:
    """Every stage's rows, with ε spent at each row (earlier stages counted as planned, as the books calibrate)."""
    rows = []
    for stage, trainer in enumerate(trainers):
        plan, accountant = trainer.plan, trainer.settings.accountant
        prior = [t.plan.history_entry() for t in trainers[:stage]]
        for row in trainer.statistics.rows:
            epsilon = epsilon_of_history([*prior, (plan.noise_multiplier, plan.sample_rate, row.step)], delta,
                                         accountant) if trainer.private else math.inf
            rows.append({"stage": stage, "step": row.step, "epsilon_spent": epsilon,
                         "released_grad_norm": row.released_grad_norm, "noise_to_signal": row.noise_to_signal,
                         "loss_outside_dp": row.loss_outside_dp,
                         "clip_fraction_outside_dp": row.clip_fraction_outside_dp})
    return rows


def _csv_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return out.getvalue()


def read_curves(path: Path) -> list[dict]:
    """curves.csv back as rows of numbers (`inf` and `nan` included)."""
    with open(path, newline="") as f:
        return [{k: (int(v) if k in ("stage", "step") else float(v)) for k, v in row.items()}
                for row in csv.DictReader(f)]


def plot_curves(rows: list[dict], path: Path, title: str = "") -> None:
    """Four panels over the step: loss, ε spent, clip fraction, noise-to-signal; one line per stage. The two
    private statistics say so in their titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    panels = [("loss_outside_dp", "loss (private batch, outside DP)", "linear"),
              ("epsilon_spent", "ε spent", "linear"),
              ("clip_fraction_outside_dp", "fraction clipped (outside DP)", "linear"),
              ("noise_to_signal", "noise / signal (from released gradient)", "log")]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), constrained_layout=True)
    for ax, (column, label, scale) in zip(axes.flat, panels):
        for stage in sorted({r["stage"] for r in rows}):
            points = [(r["step"], r[column]) for r in rows if r["stage"] == stage and math.isfinite(r[column])]
            if points:
                ax.plot(*zip(*points), marker="." if len(points) < 30 else None, label=f"stage {stage}")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        if scale == "log" and any(r[column] > 0 and math.isfinite(r[column]) for r in rows):
            ax.set_yscale("log")
            plain = matplotlib.ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4))  # 6, not 6×10⁰
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain)
        if column.startswith("clip_fraction"):
            ax.set_ylim(-0.03, 1.03)  # a fraction: its whole range, so that "all clipped" reads as 1, not as noise
        ax.grid(alpha=0.3)
    if len({r["stage"] for r in rows}) > 1:
        axes.flat[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())


def write_curves(directory: Path, trainers, delta: float, title: str = "") -> dict | None:
    """curves.csv and curves.png into the run folder; the record's `curves` entry, or None with no DP stage."""
    rows = curve_rows(trainers, delta)
    if not rows:
        return None
    directory = Path(directory)
    atomic_write_bytes(directory / CURVES_CSV, _csv_text(rows).encode())
    plot_curves(rows, directory / CURVES_PNG, title)
    return {"csv": CURVES_CSV, "plot": CURVES_PNG, "rows": len(rows), "outside_dp_columns": list(OUTSIDE_DP)}
