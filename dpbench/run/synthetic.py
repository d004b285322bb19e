"""The synthetic set a generator run scored, kept beside its record as synthetic.npz (uint8 images, int labels)."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import torch

from dpbench.storage import atomic_write_bytes

SYNTHETIC_NAME = "synthetic.npz"


def save_synthetic(directory: Path, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Write synthetic.npz atomically; returns the record's `synthetic` section (file, digest, count, shape)."""
    if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
        raise ValueError(f"synthetic set must be uint8 (N, C, H, W) with N labels, got {images.dtype} "
                         f"{tuple(images.shape)} and {len(labels)} labels")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images.cpu().numpy(), labels=labels.cpu().numpy().astype(np.int64))
    data = buffer.getvalue()
    atomic_write_bytes(Path(directory) / SYNTHETIC_NAME, data)
    return {"file": SYNTHETIC_NAME, "sha256": hashlib.sha256(data).hexdigest(), "n": len(labels),
            "shape": list(images.shape[1:])}


def load_synthetic(directory: Path, expected: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Read the synthetic set named by a record's `synthetic` section, refusing a file whose digest differs."""
    path = Path(directory) / expected["file"]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; the run's synthetic set cannot be re-scored")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise ValueError(f"{path} does not match the digest in its record (changed after the run?)")
    with np.load(io.BytesIO(data)) as arrays:
        images, labels = torch.from_numpy(arrays["images"].copy()), torch.from_numpy(arrays["labels"].copy())
    if images.dtype != torch.uint8 or len(images) != expected["n"] or len(labels) != expected["n"]:
        raise ValueError(f"{path} holds {len(images)} {images.dtype} images, the record says {expected['n']} uint8")
    return images, labels.long()
