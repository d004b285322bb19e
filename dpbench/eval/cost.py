"""Cost of a run: wall time per stage, device-hours, peak memory."""
from __future__ import annotations

import resource
import sys

import torch


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict:
    """CUDA max allocated on a GPU; the process's peak resident set size on a CPU (its whole life so far)."""
    if device.type == "cuda":
        return {"peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20, "peak_memory_kind": "cuda_max_allocated"}
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_bytes = rss_kb if sys.platform == "darwin" else rss_kb * 1024  # macOS reports bytes, Linux KiB
    return {"peak_memory_mb": rss_bytes / 2**20, "peak_memory_kind": "cpu_peak_rss"}


def cost_section(stage_seconds: dict[str, float], device: torch.device, trainable: int, total: int) -> dict:
    wall = sum(stage_seconds.values())
    hours_label = "gpu_hours" if device.type == "cuda" else "cpu_hours"
    return {
        "wall_seconds": {**{k: round(v, 3) for k, v in stage_seconds.items()}, "total": round(wall, 3)},
        hours_label: wall / 3600,
        "device": str(device),
        **peak_memory(device),
        "trainable_parameters": trainable,
        "total_parameters": total,
        "trainable_fraction": trainable / total if total else None,
    }
