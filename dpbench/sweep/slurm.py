"""The Slurm executor: the grid as one array job through submitit; each task runs one cell (`run_cell`)."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dpbench.sweep.cell import FAILED, CellJob, CellResult, run_cell
from dpbench.sweep.grid_spec import SweepInputError

POLL_SECONDS = 2.0


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    timeout_min: int = 60
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    array_parallelism: int = 16


_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_slurm_time(text: str) -> int:
    """Slurm's time formats, to whole minutes (rounded up): MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS."""
    match = _TIME.match(text.strip())
    if not match:
        raise SweepInputError(f"--slurm-time: '{text}' is not a Slurm time (e.g. 90, 1:30:00, 2-00:00:00)")
    days, a, b, c = (int(g) if g is not None else None for g in match.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # MM:SS
        seconds = a * 60 + b
    else:  # MM
        seconds = a * 60
    if seconds <= 0:
        raise SweepInputError(f"--slurm-time: '{text}' is no time at all")
    return -(-seconds // 60)


def executor_parameters(options: SlurmOptions) -> dict:
    """submitit's AutoExecutor parameters: generic ones for any cluster, `slurm_` ones for Slurm only."""
    params = {"name": "dpbench-sweep", "timeout_min": options.timeout_min, "gpus_per_node": options.gpus_per_node,
              "tasks_per_node": 1, "nodes": 1, "slurm_array_parallelism": options.array_parallelism}
    if options.cpus_per_task is not None:
        params["cpus_per_task"] = options.cpus_per_task
    if options.partition:
        params["slurm_partition"] = options.partition
    return params


def run_submitit(jobs: list[CellJob], options: SlurmOptions, folder: Path, on_result: Callable[[CellResult], None],
                 cluster: str = "slurm") -> None:
    """Submit `jobs` as one array job and wait, calling `on_result` as each task ends. `cluster="local"` runs the
    same pickled tasks on this machine through submitit's LocalExecutor (how the tests check this path)."""
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    executor.update_parameters(**executor_parameters(options))
    try:
        with executor.batch():
            submitted = [executor.submit(run_cell, job) for job in jobs]
    except (OSError, RuntimeError) as exc:  # no sbatch here, or Slurm refused the array
        raise SweepInputError(f"could not submit the sweep to {cluster} through submitit: "
                              f"{type(exc).__name__}: {exc}") from exc
    pending = dict(zip(submitted, jobs))
    while pending:
        for handle in [h for h in pending if h.done()]:
            on_result(_result(handle, pending.pop(handle)))
        if pending:
            time.sleep(POLL_SECONDS)


def _result(handle, job: CellJob) -> CellResult:
    """The task's CellResult; a task that died (timeout, node failure, cancelled) is a failed cell."""
    try:
        return handle.result()
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return CellResult(job.label, FAILED, f"job {handle.job_id} ended without a result: {type(exc).__name__}: "
                          f"{first_line}", None, 0.0)
