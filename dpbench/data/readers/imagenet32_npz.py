"""Downsampled ImageNet 32x32 (Chrabaszcz et al. 2017), the npz release:
Imagenet32_train_npz/train_data_batch_1..10.npz and Imagenet32_val_npz/val_data.npz, each holding
'data' (N, 3072) uint8 in CHW-flattened order and 'labels' (N,) with 1..1000 in the ILSVRC2012
devkit's order (see the built-in real pairs); train batches also hold 'mean'.

Nothing here builds per-image Python objects. A member stored uncompressed in the zip is
memory-mapped in place; a compressed one is inflated one batch file at a time. Class selection is a
vectorised mask per batch.
"""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from dpbench.data.readers._common import CorruptFileError, count_warning, status_of
from dpbench.data.types import FileStatus, ImageSet

TRAIN_DIR, VAL_DIR = "Imagenet32_train_npz", "Imagenet32_val_npz"
TRAIN_FILES = tuple(f"train_data_batch_{i}.npz" for i in range(1, 11))
VAL_FILES = ("val_data.npz",)
OFFICIAL_COUNT = {"train": 1_281_167, "val": 50_000}
SIDE = 32
# No per-file MD5 of the npz release is published alongside it, so none is checked.


def split_paths(root: str | Path, split: str) -> list[Path]:
    root = Path(root)
    return [root / TRAIN_DIR / f for f in TRAIN_FILES] if split == "train" else [root / VAL_DIR / f for f in VAL_FILES]


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _open(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptFileError(path, f"not a readable npz/zip file, truncated? ({exc})") from None


def _header(path: Path, zf: zipfile.ZipFile, key: str) -> tuple[tuple, bool, np.dtype, int | None]:
    """(shape, fortran order, dtype, file offset of the data if stored uncompressed else None) of
    array `key`, reading only its .npy header."""
    try:
        info = zf.getinfo(f"{key}.npy")
    except KeyError:
        raise CorruptFileError(path, f"no {key!r} array (has {[n[:-4] for n in zf.namelist()]})") from None
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version not in _HEADER_READERS:
                raise CorruptFileError(path, f"{key}.npy has .npy format version {version}")
            shape, fortran, dtype = _HEADER_READERS[version](f)
            header_len = f.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, CorruptFileError):
            raise
        raise CorruptFileError(path, f"unreadable {key}.npy ({type(exc).__name__}: {exc})") from None
    if dtype.hasobject:
        raise CorruptFileError(path, f"{key} holds Python objects, expected numbers")
    if info.compress_type != zipfile.ZIP_STORED:
        return shape, fortran, dtype, None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise CorruptFileError(path, f"bad zip local header for {key}.npy")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    offset = info.header_offset + 30 + name_len + extra_len + header_len
    needed = offset + int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size < needed:
        raise CorruptFileError(path, f"truncated: {key} needs bytes up to {needed}, file has {path.stat().st_size}")
    return shape, fortran, dtype, offset


def _member(path: Path, zf: zipfile.ZipFile, key: str) -> np.ndarray:
    """Array `key` of an npz: memory-mapped if stored uncompressed, else inflated into memory."""
    shape, fortran, dtype, offset = _header(path, zf, key)
    if offset is not None:
        return np.memmap(path, dtype=dtype, mode="r", shape=shape, order="F" if fortran else "C", offset=offset)
    try:
        with zf.open(f"{key}.npy") as f:
            return np.lib.format.read_array(f)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CorruptFileError(path, f"unreadable {key}.npy ({type(exc).__name__}: {exc})") from None


def _check_shapes(path: Path, data_shape: tuple, data_dtype: np.dtype, n_labels: int) -> None:
    if data_dtype != np.uint8 or len(data_shape) != 2 or data_shape[1] != 3 * SIDE * SIDE:
        raise CorruptFileError(path, f"'data' is {data_dtype} {data_shape}, expected uint8 (N, {3 * SIDE * SIDE})")
    if n_labels != data_shape[0]:
        raise CorruptFileError(path, f"{n_labels} labels for {data_shape[0]} images")


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(data (N, 3072) uint8, possibly memory-mapped; labels (N,) int64 in 1..1000), structure checked."""
    path = Path(path)
    with _open(path) as zf:
        data, labels = _member(path, zf, "data"), np.asarray(_member(path, zf, "labels")).reshape(-1)
    _check_shapes(path, data.shape, data.dtype, len(labels))
    if labels.size and (labels.min() < 1 or labels.max() > 1000):
        raise CorruptFileError(path, f"labels outside 1..1000 ({labels.min()}..{labels.max()}); a 0-based copy?")
    return data, labels.astype(np.int64)


def image_count(path: str | Path) -> int:
    """The batch file's image count, structure checked from the .npy headers alone (no image data is read)."""
    path = Path(path)
    with _open(path) as zf:
        shape, _, dtype, _ = _header(path, zf, "data")
        labels_shape = _header(path, zf, "labels")[0]
    _check_shapes(path, shape, dtype, int(np.prod(labels_shape)))
    return shape[0]


def probe_batch(path: str | Path) -> str:
    return f"{image_count(path)} images"


def _to_images(rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rows, dtype=np.uint8).reshape(-1, 3, SIDE, SIDE))  # a copy: rows may be a read-only memmap


def select_classes(root: str | Path, devkit_ids: Sequence[int], split: str = "train") -> tuple[ImageSet, list[str]]:
    """Only the images whose devkit label is in `devkit_ids`, labels kept as devkit ids (1..1000)."""
    ids = np.asarray(devkit_ids, dtype=np.int64)
    images, labels, total = [], [], 0
    for path in split_paths(root, split):
        data, lab = read_batch(path)
        total += len(lab)
        keep = np.flatnonzero(np.isin(lab, ids))
        images.append(_to_images(data[keep]))
        labels.append(torch.from_numpy(lab[keep]))
    warnings = [w for w in (count_warning(f"ImageNet32 {split}", total, OFFICIAL_COUNT[split]),) if w]
    return ImageSet(torch.cat(images), torch.cat(labels)), warnings


def load_split(root: str | Path, split: str = "val") -> tuple[ImageSet, list[str]]:
    """A whole split in memory with labels 0..999 (devkit id - 1), copied batch file by batch file into one
    preallocated uint8 tensor: train's 1.28M images take their 3.9 GB once, not twice (a list, then its cat)."""
    paths = split_paths(root, split)
    n = sum(image_count(p) for p in paths)
    images, labels, start = torch.empty((n, 3, SIDE, SIDE), dtype=torch.uint8), [], 0
    for path in paths:  # one batch file mapped at a time: its pages leave the resident set when it is unmapped
        data, batch_labels = read_batch(path)
        if start + len(data) > n:
            raise CorruptFileError(path, "holds more images than its header announced")
        images[start:start + len(data)].view(len(data), -1).numpy()[:] = data
        labels.append(batch_labels)
        start += len(data)
        del data
    warnings = [w for w in (count_warning(f"ImageNet32 {split}", n, OFFICIAL_COUNT[split]),) if w]
    return ImageSet(images, torch.from_numpy(np.concatenate(labels) - 1)), warnings


def stream(root: str | Path, split: str = "train", chunk_size: int = 4096, seed: int | None = 0) -> Iterator[ImageSet]:
    """All images of a split as ImageSet chunks with labels 0..999 (devkit id - 1), one batch file
    in memory at most. With a seed, file order and the order within each file are shuffled."""
    rng = np.random.default_rng(seed) if seed is not None else None
    paths = split_paths(root, split)
    for k in rng.permutation(len(paths)) if rng is not None else range(len(paths)):
        data, labels = read_batch(paths[k])
        order = rng.permutation(len(labels)) if rng is not None else np.arange(len(labels))
        for start in range(0, len(order), chunk_size):
            idx = order[start:start + chunk_size]
            yield ImageSet(_to_images(data[idx]), torch.from_numpy(labels[idx] - 1))


def check_imagenet32(root: str | Path, splits: tuple[str, ...] = ("train", "val"), deep: bool = True) -> list[FileStatus]:
    return [
        status_of(p, probe_batch, deep)
        for split in splits for p in split_paths(root, split)
    ]
