"""One cell, run where an executor puts it (a pool worker, a Slurm array task): an ordinary `dpbench run`, its
stdout and stderr appended to files beside its record. Picklable in and out, so submitit can ship it."""
from __future__ import annotations

import datetime as dt
import os
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from dpbench.run.runner import RunRequest

STDOUT_NAME, STDERR_NAME = "stdout.log", "stderr.log"
DONE, FAILED = "done", "failed"


@dataclass(frozen=True)
class CellJob:
    label: str
    request: RunRequest
    run_dir: Path
    torch_threads: int | None = None  # a pool of N workers on C cores gives each C // N threads
    sweep_jobs: int | None = None  # cells of the sweep running at once beside this one (the record's concurrency)


@dataclass(frozen=True)
class CellResult:
    label: str
    status: str  # DONE or FAILED
    reason: str | None
    record_path: str | None
    seconds: float


def run_cell(job: CellJob) -> CellResult:
    """Run the cell as `dpbench run` would; every failure becomes a FAILED result with its reason, never an
    exception, so one cell cannot stop the others."""
    started = time.perf_counter()
    with output_beside_record(job.run_dir, job.label):
        status, reason, record_path = _run(job)
        print(f"[dpbench sweep] {job.label}: {status}" + (f" ({reason})" if reason else ""), file=sys.stderr)
    return CellResult(job.label, status, reason, record_path, time.perf_counter() - started)


def _run(job: CellJob) -> tuple[str, str | None, str | None]:
    from dpbench.api.registry import UnknownNameError
    from dpbench.data.types import DataMissingError
    from dpbench.run.progress import PlainProgress
    from dpbench.run.runner import RunInputError, execute

    from dpbench.run.environment import SWEEP_JOBS_ENV

    if job.sweep_jobs is not None:
        os.environ[SWEEP_JOBS_ENV] = str(job.sweep_jobs)
    try:
        if job.torch_threads:
            import torch

            torch.set_num_threads(job.torch_threads)
        registry = _registry()
        data = _pair_data(job.request.pair, job.request.data_root)
        outcome = execute(registry, job.request, PlainProgress(), data=data)
    except (UnknownNameError, RunInputError, DataMissingError) as exc:
        return FAILED, f"bad input (exit 2 in `dpbench run`): {exc}", None
    except Exception as exc:  # a crash before the run could write its record
        traceback.print_exc()
        return FAILED, f"{type(exc).__name__}: {exc}", None
    if outcome.ok:
        return DONE, None, str(outcome.record_path)
    error = outcome.record.get("error", {})
    return FAILED, f"{error.get('type')}: {error.get('message')}", str(outcome.record_path)


@lru_cache(maxsize=1)
def _registry():
    from dpbench.api.registry import load_registry

    return load_registry()


@lru_cache(maxsize=4)
def _pair_data(pair: str, data_root: str | None):
    """A worker that runs several cells of a pair loads its data once."""
    return _registry().pair(pair).load(data_root)


@contextmanager
def output_beside_record(run_dir: Path, label: str) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so native code's output too) to
    stdout.log and stderr.log in the run folder, appended, one header per attempt."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    header = f"=== dpbench sweep: {label}, attempt started {now:%Y-%m-%d %H:%M:%S} UTC ===\n"
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(run_dir / STDOUT_NAME, "a") as out, open(run_dir / STDERR_NAME, "a") as err:
        out.write(header)
        err.write(header)
        out.flush()
        err.flush()
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
