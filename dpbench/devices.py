"""The torch device a command asked for (ground floor: any stage may ask)."""
from __future__ import annotations

import torch


class DeviceUnavailableError(ValueError):
    """The asked-for device does not exist here (bad input: CLI exit 2)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(name)
