"""Where a run executes: the software it ran with, the device, what shared the machine, and the clock."""
from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path

import torch

import dpbench
from dpbench.devices import DeviceUnavailableError, resolve_device  # noqa: F401 - re-exported
from dpbench.version import API_VERSION

SWEEP_JOBS_ENV = "DPBENCH_SWEEP_JOBS"  # set by `dpbench sweep` for each cell: how many cells run at once


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(dpbench.__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def software_env(device: torch.device) -> dict:
    """The record's `env` section: versions, commit and device."""
    from importlib.metadata import version

    def v(name: str) -> str | None:
        try:
            return version(name)
        except Exception:
            return None

    return {
        "dpbench": dpbench.__version__, "api_version": API_VERSION, "torch": torch.__version__, "opacus": v("opacus"),
        "torch-fidelity": v("torch-fidelity"), "python": platform.python_version(), "git_commit": git_commit(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()})",
        "concurrency": concurrency_at_start(),
    }


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (processes running or waiting for a core); None where the OS has
    none."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def concurrency_at_start() -> dict:
    """What the run shares its machine with, as it starts: the sweep's cells running at once (None outside a
    sweep), torch's intra-op threads and the load average; `load_end` is filled when the run ends
    (`concurrency_at_end`). A cost measured under load measures the load too."""
    jobs = os.environ.get(SWEEP_JOBS_ENV)
    return {"sweep_jobs": int(jobs) if jobs and jobs.isdigit() else None, "torch_threads": torch.get_num_threads(),
            "load_start": load_average(), "load_end": None}


def concurrency_at_end(env: dict) -> None:
    """Fill the load average at the end into a record's `env` section (one written by `software_env`)."""
    if isinstance(env.get("concurrency"), dict):
        env["concurrency"]["load_end"] = load_average()


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
