"""The ground floor: the one atomic writer, the one cache-key helper, and where the user's cache, data and
leaderboard live by default.

Nothing here imports another dpbench module, so records, caches and evaluators can all depend on it
without imports running back up a floor.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import platformdirs
from filelock import FileLock

APP_NAME = "dpbench"
CACHE_ENV = "DPBENCH_CACHE"  # overrides the default cache folder, as --cache-dir does
DATA_ROOT_ENV = "DPBENCH_DATA_ROOT"
CACHE_FILE_MODE = 0o600  # cache entries are private to the user: some are pickles, and all describe the data
CACHE_DIR_MODE = 0o700


def default_cache_dir() -> Path:
    """$DPBENCH_CACHE, else the user's cache folder (platformdirs: ~/.cache/dpbench on Linux, or
    $XDG_CACHE_HOME/dpbench; ~/Library/Caches/dpbench on macOS), absolute, so runs started from any working folder
    share one cache (one Inception derivation, one set of reference statistics)."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser().absolute() if configured else Path(platformdirs.user_cache_dir(APP_NAME))


def default_data_root() -> Path:
    """$DPBENCH_DATA_ROOT, else `data/` in the user's cache folder (~/.cache/dpbench/data on Linux). It does not
    follow $DPBENCH_CACHE or --cache-dir: the datasets are the user's files, the cache is dpbench's."""
    configured = os.environ.get(DATA_ROOT_ENV)
    return Path(configured).expanduser() if configured else Path(platformdirs.user_cache_dir(APP_NAME)) / "data"


def default_leaderboard_dir() -> Path:
    """Where `dpbench leaderboard` writes without --out: `leaderboard/` in the user's data folder
    (~/.local/share/dpbench/leaderboard on Linux), never a folder of the repository."""
    return Path(platformdirs.user_data_dir(APP_NAME)) / "leaderboard"


def private_dir(path: Path) -> Path:
    """Create (or tighten) a cache folder so that only its owner can list, read or plant files in it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=CACHE_DIR_MODE)
    os.chmod(path, CACHE_DIR_MODE)
    return path


@contextmanager
def cache_build_lock(entry: Path) -> Iterator[None]:
    """Hold the build lock of cache entry `entry` (`<entry>.lock`, beside it) across processes.

    Parallel runs (a sweep's cells) share one cache: the first to need a missing entry builds it while the
    others wait on this lock, then find the entry built. Callers check for the entry again inside the lock.
    """
    entry = Path(entry)
    private_dir(entry.parent)
    with FileLock(str(entry) + ".lock", mode=CACHE_FILE_MODE):
        yield


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: readers never see half a file."""
    atomic_write(path, lambda handle: handle.write(data), mode)


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], Any], mode: int = 0o644) -> None:
    """Call `write(handle)` on a temporary file beside `path`, then rename it into place (or remove it on error)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # mkstemp makes files owner-only; caches and records may be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: Path, mode: int = CACHE_FILE_MODE) -> None:
    """torch.save, atomically; used for cache entries, so private to the user by default."""
    import torch

    private_dir(Path(path).parent)
    atomic_write(path, lambda handle: torch.save(obj, handle), mode)


def _canonical(value: Any) -> Any:
    """JSON-able form with a stable order; non-finite floats as strings (JSON has none)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def canonical_json(fields: Any) -> str:
    return json.dumps(_canonical(fields), sort_keys=True, separators=(",", ":"))


def cache_key(fields: Any, length: int = 16) -> str:
    """A short, stable hex digest of JSON-able `fields` (dict order and tuples vs lists do not matter)."""
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()[:length]


def tensor_digest(*tensors: Any, length: int = 16) -> str:
    """A digest of tensors' shapes, dtypes and contents (for data digests and cache keys over pixels)."""
    h = hashlib.sha256()
    for tensor in tensors:
        t = tensor.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:length]
