"""Where a run executes: the software it ran with, the device, and the clock."""
from __future__ import annotations

import datetime as dt
import platform
import subprocess
from pathlib import Path

import torch

import dpbench
from dpbench.devices import DeviceUnavailableError, resolve_device  # noqa: F401 - re-exported
from dpbench.version import API_VERSION


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
    }


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
