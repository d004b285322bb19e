"""MNIST in its distributed idx format (gzipped as released, or uncompressed as torchvision leaves it).

Layout: <raw_dir>/{train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
t10k-labels-idx1-ubyte}, each either plain or with ".gz". torchvision's `read_image_file` is not used:
it reads neither gzip nor truncated files with a usable message.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from dpbench.data.readers._common import CorruptFileError, count_warning, md5_warning, status_of
from dpbench.data.types import FileStatus, ImageSet

STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
OFFICIAL_COUNT = {"train": 60_000, "test": 10_000}
# MD5s of the released .gz files (as in torchvision.datasets.MNIST.resources).
OFFICIAL_GZ_MD5 = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Parse one idx file of unsigned bytes with `ndim` dimensions; any deviation names the file."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, OSError, zlib.error) as exc:
        raise CorruptFileError(path, f"not a complete gzip stream ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise CorruptFileError(path, "not an idx file (the first two bytes of the magic number must be 0)")
    if raw[2] != 0x08:
        raise CorruptFileError(path, f"idx type code 0x{raw[2]:02X}, expected 0x08 (unsigned byte)")
    if raw[3] != ndim:
        raise CorruptFileError(path, f"{raw[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptFileError(path, f"truncated inside the header ({len(raw)} bytes, header needs {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    got = len(raw) - header
    if got < expected:
        raise CorruptFileError(path, f"truncated: header promises shape {dims} = {expected} bytes of data, file has {got}")
    if got > expected:
        raise CorruptFileError(path, f"{got - expected} bytes after the {expected} the header promises for shape {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def locate(raw_dir: Path, stem: str) -> Path | None:
    """The existing copy of a file: uncompressed first (what torchvision extracts), then .gz."""
    for path in (raw_dir / stem, raw_dir / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def _md5_note(path: Path, with_path: bool = True) -> str | None:
    return md5_warning(path, OFFICIAL_GZ_MD5[path.name[:-3]], with_path) if path.suffix == ".gz" else None


def load_mnist(raw_dir: str | Path, split: str) -> tuple[ImageSet, list[str]]:
    """One MNIST split as uint8 (N, 1, 28, 28) with labels 0..9, plus warnings (MD5, counts)."""
    raw_dir = Path(raw_dir)
    image_stem, label_stem = STEMS[split]
    paths = [locate(raw_dir, image_stem), locate(raw_dir, label_stem)]
    for stem, path in zip((image_stem, label_stem), paths):
        if path is None:
            raise FileNotFoundError(f"{raw_dir / stem}.gz (or uncompressed {stem}) is missing")
    images, labels = read_idx(paths[0], 3), read_idx(paths[1], 1)
    if images.shape[1:] != (28, 28):
        raise CorruptFileError(paths[0], f"images are {images.shape[1]}x{images.shape[2]}, MNIST's are 28x28")
    if len(labels) != len(images):
        raise CorruptFileError(paths[1], f"{len(labels)} labels for {len(images)} images in {paths[0].name}")
    if labels.size and labels.max() > 9:
        raise CorruptFileError(paths[1], f"label {int(labels.max())} outside 0..9")
    warnings = [w for w in (*map(_md5_note, paths), count_warning(f"MNIST {split}", len(images), OFFICIAL_COUNT[split])) if w]
    return ImageSet(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))), warnings


def check_mnist(raw_dir: str | Path, splits: tuple[str, ...] = ("train", "test"), deep: bool = True) -> list[FileStatus]:
    raw_dir = Path(raw_dir)
    out = []
    for split in splits:
        for stem, ndim in zip(STEMS[split], (3, 1)):
            path = locate(raw_dir, stem)
            if path is None:
                out.append(FileStatus(str(raw_dir / f"{stem}.gz"), "missing", f"or uncompressed {raw_dir / stem}"))
                continue
            out.append(status_of(path, lambda p, n=ndim: (read_idx(p, n), _md5_note(p, False))[1], deep))
    return out
