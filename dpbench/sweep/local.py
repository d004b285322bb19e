"""The local executor: a pool of worker processes, each running one cell at a time."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from typing import Callable

from dpbench.sweep.cell import FAILED, CellJob, CellResult, run_cell


def run_local(jobs: list[CellJob], workers: int, on_result: Callable[[CellResult], None]) -> None:
    """Run `jobs` on `workers` processes, calling `on_result` as each cell ends. Each worker gets an equal
    share of the cores for torch, so N workers do not each start a thread per core."""
    workers = min(workers, len(jobs))  # a worker costs an interpreter start and a data load: none left idle
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [replace(job, torch_threads=job.torch_threads or threads) for job in jobs]
    # spawn, not fork: a forked child of a process that has used torch's thread pools can hang
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(run_cell, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # the worker process died (killed, out of memory): the pool is broken
                result = CellResult(job.label, FAILED, f"worker process died: {type(exc).__name__}: {exc}", None, 0.0)
            on_result(result)
