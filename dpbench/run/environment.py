"""Where a run executes: the torch device it asked for, the software it ran with, and the clock."""
from __future__ import annotations

import datetime as dt
import platform
import subprocess
from pathlib import Path

import torch

import dpbench
from dpbench.version import API_VERSION


class DeviceUnavailableError(ValueError):
    """The asked-for device does not exist here (bad input: CLI exit 2)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(name)


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
