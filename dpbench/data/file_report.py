"""Where the user's dataset files live, and the report a user sees about them."""
from __future__ import annotations

import os
from pathlib import Path

from dpbench.data.types import FileStatus
from dpbench.storage import DATA_ROOT_ENV as ENV_VAR, default_data_root


def resolve_data_root(data_root: str | os.PathLike | None) -> Path:
    """--data-root if given, else $DPBENCH_DATA_ROOT, else data/ in the user's cache folder (~/.cache/dpbench/data)."""
    return Path(data_root).expanduser() if data_root else default_data_root()


def format_report(pair: str, root: Path, statuses: list[FileStatus], hints: list[str]) -> str:
    """The text a user sees from `dpbench data check` and when a run's data is missing."""
    lines = [f"pair {pair!r}, data root {root} (--data-root or ${ENV_VAR}):"]
    lines += [f"  {s.status:8} {s.path}" + (f"  ({s.detail})" if s.detail else "") for s in statuses]
    if hints:
        lines += ["to get the missing files:"] + [f"  {h}" for h in hints]
    return "\n".join(lines)
