"""A PNG grid of samples: one row per class."""
from __future__ import annotations

import io
from pathlib import Path

import torch
from torchvision.utils import make_grid
from PIL import Image

from dpbench.storage import atomic_write_bytes


def save_sample_grid(samples: torch.Tensor, labels: torch.Tensor, num_classes: int, path: Path, per_row: int = 10) -> None:
    rows = []
    for cls in range(num_classes):
        chosen = samples[labels == cls][:per_row]
        if len(chosen) < per_row:  # keep the grid rectangular when a class has few samples
            chosen = torch.cat([chosen, torch.zeros((per_row - len(chosen), *samples.shape[1:]), dtype=samples.dtype)])
        rows.append(chosen)
    grid = make_grid(torch.cat(rows), nrow=per_row, padding=2, pad_value=128)
    image = Image.fromarray(grid.permute(1, 2, 0).numpy())
    scale = max(1, 256 // samples.shape[-1])
    image = image.resize((image.width * scale // 2 or 1, image.height * scale // 2 or 1), Image.NEAREST) if scale > 2 else image
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())
