"""What every reader shares: the corrupt-file error, MD5 and count checks that only warn."""
from __future__ import annotations

import hashlib
from pathlib import Path

from dpbench.data.types import DataMissingError, FileStatus


class CorruptFileError(DataMissingError, ValueError):
    """A file exists but is truncated or malformed. Both a DataMissingError (the CLI exits 2 on it)
    and a ValueError (it is bad data, not an absent file)."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):  # so that it survives the trip back from a decoding worker process
        return type(self), (self.path, self.problem)


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def md5_warning(path: Path, expected: str | None, with_path: bool = True) -> str | None:
    """A warning when the file's MD5 differs from the official release's; never an error, because
    re-packed copies, subsets and test fixtures are legitimate inputs."""
    if expected is None:
        return None
    got = md5_of(path)
    if got == expected:
        return None
    note = f"warning: MD5 {got} differs from the official release's {expected} (re-packed copy or subset?); accepted"
    return f"{path}: {note}" if with_path else note


def count_warning(what: str, got: int, official: int) -> str | None:
    if got == official:
        return None
    return f"{what}: {got} images where the official release has {official}; accepted as a subset/re-pack"


def status_of(path: Path, probe, deep: bool = True) -> FileStatus:
    """FileStatus for one expected file: missing, corrupt (probe raised) or present (probe's note).
    With deep=False only existence is checked."""
    if not path.exists():
        return FileStatus(str(path), "missing")
    if not deep:
        return FileStatus(str(path), "present")
    try:
        note = probe(path)
    except (CorruptFileError, ValueError, OSError) as exc:
        return FileStatus(str(path), "corrupt", getattr(exc, "problem", None) or str(exc))
    return FileStatus(str(path), "present", note or "")
