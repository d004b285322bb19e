"""The local executor: a pool of worker processes, each running one cell at a time."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Callable

from dpbench.sweep.cell import FAILED, CellJob, CellResult, run_cell


def run_local(jobs: list[CellJob], workers: int, on_result: Callable[[CellResult], None]) -> None:
    """Run `jobs` on `workers` processes, calling `on_result` as each cell ends. Each worker gets an equal
    share of the cores for torch, so N workers do not each start a thread per core.

    A worker that dies (killed, out of memory) breaks the whole pool and fails every cell still in it. Those
    cells are then run again one at a time, each in a fresh pool of its own, so only the cell that kills its
    worker fails and the others complete."""
    workers = min(workers, len(jobs))  # a worker costs an interpreter start and a data load: none left idle
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [replace(job, torch_threads=job.torch_threads or threads, sweep_jobs=workers) for job in jobs]
    for job in _run_pool(jobs, workers, on_result):
        for lost in _run_pool([job], 1, on_result):
            on_result(CellResult(lost.label, FAILED, "worker process died (killed, or out of memory)", None, 0.0))


def _run_pool(jobs: list[CellJob], workers: int, on_result: Callable[[CellResult], None]) -> list[CellJob]:
    """Run `jobs` on one pool; returns the jobs that did not finish because a worker died and broke the pool."""
    # spawn, not fork: a forked child of a process that has used torch's thread pools can hang
    context = multiprocessing.get_context("spawn")
    unfinished = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(run_cell, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                result = future.result()
            except BrokenProcessPool:
                unfinished.append(job)
                continue
            except Exception as exc:  # the job could not be shipped to or from the worker
                result = CellResult(job.label, FAILED, f"{type(exc).__name__}: {exc}", None, 0.0)
            on_result(result)
    return [job for job in jobs if job in unfinished]
