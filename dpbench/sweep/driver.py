"""A sweep from start to end: expand the grid, plan each cell (skip the done ones), run the rest on an executor
with a progress bar over cells, and collect every cell's outcome."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from dpbench.api.registry import Registry
from dpbench.run.runner import RunRequest
from dpbench.sweep import summary
from dpbench.sweep.cell import CellJob, CellResult
from dpbench.sweep.grid_spec import expand_grid
from dpbench.sweep.local import run_local
from dpbench.sweep.plan import DONE, FAILED, STALE, CellPlan, plan_cells
from dpbench.sweep.slurm import SlurmOptions, run_submitit

LOCAL, SLURM = "local", "slurm"


@dataclass
class SweepRequest:
    methods: list[str]
    pairs: list[str]
    epsilons: list[float]
    seeds: list[int]
    template: RunRequest  # everything a cell's `dpbench run` shares (preset, δ, out, cache, evaluators, ...)
    overrides: dict[str, str] = field(default_factory=dict)
    references: bool = False
    retry_failed: bool = False
    rerun_stale: bool = False  # run again the cells whose completed record other code (or data) made
    executor: str = LOCAL
    jobs: int = 1
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    submitit_cluster: str = "slurm"  # "local": submitit's LocalExecutor runs the array job here (tests, checks)


def plan_sweep(registry: Registry, request: SweepRequest) -> list[CellPlan]:
    """Every cell, checked and located; raises SweepInputError, UnknownNameError or DataMissingError (exit 2)
    before anything runs or is written."""
    cells = expand_grid(registry, methods=request.methods, pairs=request.pairs, epsilons=request.epsilons,
                        seeds=request.seeds, overrides=request.overrides, references=request.references)
    return plan_cells(registry, cells, request.template)


def run_sweep(plans: list[CellPlan], request: SweepRequest, progress) -> list[summary.CellOutcome]:
    """Run the cells that need it; returns one outcome per planned cell, in grid order."""
    outcomes: dict[str, summary.CellOutcome] = {}
    to_run = []
    for plan in plans:
        if plan.state == DONE:
            outcomes[plan.cell.label] = summary.CellOutcome(plan.cell.label, summary.SKIPPED, run_dir=str(plan.run_dir))
        elif plan.state == STALE and not request.rerun_stale:
            outcomes[plan.cell.label] = summary.CellOutcome(
                plan.cell.label, summary.STALE, f"{plan.stale_reason} (--rerun-stale runs it again)", str(plan.run_dir))
        elif plan.state == FAILED and not request.retry_failed:
            outcomes[plan.cell.label] = summary.CellOutcome(
                plan.cell.label, summary.FAILED, f"failed earlier (--retry-failed runs it again): {plan.earlier_error}",
                str(plan.run_dir))
        else:
            to_run.append(plan)
    for plan in plans:
        if plan.state == STALE:
            progress.log(f"[dpbench sweep] {plan.cell.label}: stale, {plan.stale_reason}"
                         + ("; running it again (the old record moves to history/)" if request.rerun_stale
                            else "; kept (--rerun-stale runs it again)"))
    if to_run:
        task = progress.task(f"sweep: {len(to_run)} of {len(plans)} cells to run", total=len(to_run))
        tally = {summary.DONE: 0, summary.FAILED: 0}
        run_dirs = {plan.cell.label: str(plan.run_dir) for plan in to_run}

        def on_result(result: CellResult) -> None:
            status = summary.DONE if result.status == "done" else summary.FAILED
            tally[status] += 1
            outcomes[result.label] = summary.CellOutcome(result.label, status, result.reason, run_dirs[result.label],
                                                         result.seconds)
            progress.log(f"[dpbench sweep] {result.label}: {status} in {result.seconds:.0f} s"
                         + (f": {result.reason}" if result.reason else ""))
            task.advance(1, done=tally[summary.DONE], failed=tally[summary.FAILED])

        jobs = cell_jobs(to_run, request)
        if request.executor == SLURM:
            folder = Path(request.template.out) / "submitit"
            run_submitit(jobs, request.slurm, folder, on_result, cluster=request.submitit_cluster)
        else:
            run_local(jobs, request.jobs, on_result)
        task.close()
    return [outcomes[plan.cell.label] for plan in plans]


def cell_jobs(plans: list[CellPlan], request: SweepRequest) -> list[CellJob]:
    """What each executor task gets. On Slurm with several GPUs per node, a cell trains data-parallel on all of
    them: `nproc` = GPUs relaunches it under torchrun (not hashed, so the cell's folder does not change)."""
    gpus = request.slurm.gpus_per_node if request.executor == SLURM else 0
    nproc = gpus if gpus > 1 else 1
    jobs = 1 if request.executor == SLURM else None  # a Slurm task has its allocation; the local pool sets its size
    return [CellJob(plan.cell.label, dataclasses.replace(plan.request, nproc=nproc), plan.run_dir, sweep_jobs=jobs)
            for plan in plans]


def timed_sweep(plans: list[CellPlan], request: SweepRequest, progress) -> tuple[list[summary.CellOutcome], float]:
    started = time.perf_counter()
    outcomes = run_sweep(plans, request, progress)
    return outcomes, time.perf_counter() - started
