"""A folder of (downsampled) images, class per sub-folder as ImageNet unpacks: <root>/<wnid>/<name>.{jpg,jpeg,png}.

The public alternative to the ImageNet32 npz release (e.g. a 64x64 ImageNet). Labels are the index of
the sub-folder in sorted order; images are center-cropped to a square and resized, streamed in chunks.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from dpbench.data.readers.celeba import decode
from dpbench.data.types import FileStatus, ImageSet

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def list_images(root: str | Path) -> tuple[list[Path], np.ndarray]:
    """All image files under root (sorted) and their labels (index of their top-level folder)."""
    root = Path(root)
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    paths, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in EXTENSIONS)
        paths += found
        labels += [label] * len(found)
    return paths, np.asarray(labels, dtype=np.int64)


def stream(root: str | Path, size: int, chunk_size: int = 4096, seed: int | None = 0) -> Iterator[ImageSet]:
    """Every image as uint8 (B, 3, size, size) chunks; shuffled with a seed, decoded per chunk only."""
    paths, labels = list_images(root)
    order = np.random.default_rng(seed).permutation(len(paths)) if seed is not None else np.arange(len(paths))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for start in range(0, len(order), chunk_size):
            idx = order[start:start + chunk_size]
            images = np.stack(list(pool.map(lambda i: decode(paths[i], size, crop=1 << 30), idx)))
            yield ImageSet(torch.from_numpy(images), torch.from_numpy(labels[idx]))


def check_folder(root: str | Path, deep: bool = True) -> list[FileStatus]:
    root = Path(root)
    if not root.is_dir():
        return [FileStatus(str(root), "missing", "a folder of class sub-folders of images")]
    if not deep:
        return [FileStatus(str(root), "present")]
    n = len(list_images(root)[0])
    return [FileStatus(str(root), "present" if n else "corrupt", f"{n} images" if n else "holds no images")]
