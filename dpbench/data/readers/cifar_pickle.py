"""CIFAR-10's python version (cifar-10-batches-py/): data_batch_1..5, test_batch, batches.meta.

Each batch is a pickled dict with 'data' (N, 3072) uint8 in CHW-flattened order and 'labels' (N ints
0..9). The files are unpickled with an allow-list of numpy classes only, since a pickle from a
user's directory could otherwise run arbitrary code.
"""
from __future__ import annotations

import codecs
import pickle
from pathlib import Path

import numpy as np
import torch

from dpbench.data.readers._common import CorruptFileError, count_warning, md5_warning, status_of
from dpbench.data.types import FileStatus, ImageSet

try:
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
OFFICIAL_PER_BATCH = 10_000
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
OFFICIAL_MD5 = {  # as in torchvision.datasets.CIFAR10
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not a numpy array class") from None


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except Exception as exc:  # EOFError on truncation, UnpicklingError on garbage
        raise CorruptFileError(path, f"not a readable CIFAR pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise CorruptFileError(path, f"holds a {type(obj).__name__}, expected a dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch as uint8 (N, 3, 32, 32) and int64 labels, structure checked."""
    path = Path(path)
    batch = _unpickle(path)
    for key in ("data", "labels"):
        if key not in batch:
            raise CorruptFileError(path, f"key {key!r} missing (found {sorted(batch)})")
    data, labels = batch["data"], np.asarray(batch["labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise CorruptFileError(path, f"'data' is {getattr(data, 'dtype', type(data).__name__)} {shape}, expected uint8 (N, 3072)")
    if labels.shape != (len(data),):
        raise CorruptFileError(path, f"{labels.size} labels for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise CorruptFileError(path, f"labels outside 0..9 ({labels.min()}..{labels.max()})")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_meta(path: str | Path) -> list[str]:
    path = Path(path)
    names = _unpickle(path).get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise CorruptFileError(path, f"'label_names' should list 10 class names, got {names!r}")
    return [n.decode() if isinstance(n, bytes) else n for n in names]


def load_cifar10(batches_dir: str | Path, split: str) -> tuple[ImageSet, list[str]]:
    """CIFAR-10 train (5 batches) or test as uint8 (N, 3, 32, 32), labels 0..9, plus warnings."""
    batches_dir = Path(batches_dir)
    names = TRAIN_FILES if split == "train" else TEST_FILES
    warnings: list[str] = []
    parts = []
    for name in names:
        path = batches_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing")
        parts.append(read_batch(path))
        warnings += [w for w in (md5_warning(path, OFFICIAL_MD5[name]),) if w]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if w := count_warning(f"CIFAR-10 {split}", len(images), OFFICIAL_PER_BATCH * len(names)):
        warnings.append(w)
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels)), warnings


def check_cifar10(batches_dir: str | Path, deep: bool = True) -> list[FileStatus]:
    batches_dir = Path(batches_dir)
    out = []
    for name in (*TRAIN_FILES, *TEST_FILES, META_FILE):
        reader = read_meta if name == META_FILE else read_batch
        out.append(status_of(batches_dir / name, lambda p, r=reader, n=name: (r(p), md5_warning(p, OFFICIAL_MD5[n], with_path=False))[1], deep))
    return out
