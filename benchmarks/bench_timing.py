"""The timing loop the benchmark scripts share: one warm-up call, then the mean seconds of `repeats` calls,
with the device's peak-memory counter reset after the warm-up (read it with dpbench.eval.cost.peak_memory)."""
from __future__ import annotations

import time
from typing import Callable

import torch


def seconds_per_call(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    from dpbench.eval.cost import reset_peak_memory

    fn()  # warm-up: lazy initialisation and allocator growth stay out of the figure
    reset_peak_memory(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats
