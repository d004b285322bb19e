"""SVHN's cropped-digit MATLAB files ({train,test}_32x32.mat): X is (32, 32, 3, N) uint8, y is (N, 1)
with 1..10, where 10 means the digit 0."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch

from dpbench.data.readers._common import CorruptFileError, count_warning, md5_warning, status_of
from dpbench.data.types import FileStatus, ImageSet

OFFICIAL_COUNT = {"train": 73_257, "test": 26_032}
OFFICIAL_MD5 = {"train": "e26dedcc434d2e4c54c9b2d4a06d8373", "test": "eb5a983be6a315427106f1b164d9cef3"}


def svhn_path(svhn_dir: str | Path, split: str) -> Path:
    return Path(svhn_dir) / f"{split}_32x32.mat"


def _read_mat(path: Path, variables=None) -> dict:
    try:
        return scipy.io.loadmat(path, variable_names=variables)
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError, OSError... on bad bytes
        raise CorruptFileError(path, f"not a readable MATLAB .mat file ({type(exc).__name__}: {exc})") from None


def _validate_header(path: Path) -> int:
    """Check variable names and shapes from the .mat headers alone; returns N."""
    try:
        found = {name: (shape, cls) for name, shape, cls in scipy.io.whosmat(path)}
    except Exception as exc:
        raise CorruptFileError(path, f"not a readable MATLAB .mat file ({type(exc).__name__}: {exc})") from None
    for name in ("X", "y"):
        if name not in found:
            raise CorruptFileError(path, f"variable {name!r} missing (found {sorted(found)}); truncated file?")
    x_shape, y_shape = found["X"][0], found["y"][0]
    if len(x_shape) != 4 or tuple(x_shape[:3]) != (32, 32, 3):
        raise CorruptFileError(path, f"X has shape {tuple(x_shape)}, expected (32, 32, 3, N)")
    if int(np.prod(y_shape)) != x_shape[3]:
        raise CorruptFileError(path, f"y has shape {tuple(y_shape)} for {x_shape[3]} images")
    return int(x_shape[3])


def load_svhn(svhn_dir: str | Path, split: str = "train") -> tuple[ImageSet, list[str]]:
    """One SVHN split as uint8 (N, 3, 32, 32) RGB with labels 0..9, plus warnings (MD5, counts)."""
    path = svhn_path(svhn_dir, split)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    n = _validate_header(path)
    mat = _read_mat(path, ["X", "y"])
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.dtype != np.uint8:
        raise CorruptFileError(path, f"X has dtype {x.dtype}, expected uint8")
    if y.size and (y.min() < 1 or y.max() > 10 or not np.all(y == np.round(y))):
        raise CorruptFileError(path, f"labels must be integers 1..10, found range {y.min()}..{y.max()}")
    labels = np.where(y == 10, 0, y).astype(np.int64)
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # (32, 32, 3, N) -> (N, 3, 32, 32)
    warnings = [w for w in (md5_warning(path, OFFICIAL_MD5.get(split)), count_warning(f"SVHN {split}", n, OFFICIAL_COUNT[split])) if w]
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels)), warnings


def check_svhn(svhn_dir: str | Path, splits: tuple[str, ...] = ("train",), deep: bool = True) -> list[FileStatus]:
    return [
        status_of(svhn_path(svhn_dir, s), lambda p, s=s: (_validate_header(p), md5_warning(p, OFFICIAL_MD5.get(s), with_path=False))[1], deep)
        for s in splits
    ]
