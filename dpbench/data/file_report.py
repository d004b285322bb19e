"""Where the user's dataset files live, and the report a user sees about them."""
from __future__ import annotations

import os
from pathlib import Path

from dpbench.data.types import FileStatus

ENV_VAR = "DPBENCH_DATA_ROOT"
DEFAULT_ROOT = Path.home() / ".cache" / "dpbench" / "data"


def resolve_data_root(data_root: str | os.PathLike | None) -> Path:
    """--data-root if given, else $DPBENCH_DATA_ROOT, else ~/.cache/dpbench/data."""
    return Path(data_root or os.environ.get(ENV_VAR) or DEFAULT_ROOT).expanduser()


def format_report(pair: str, root: Path, statuses: list[FileStatus], hints: list[str]) -> str:
    """The text a user sees from `dpbench data check` and when a run's data is missing."""
    lines = [f"pair {pair!r}, data root {root} (--data-root or ${ENV_VAR}):"]
    lines += [f"  {s.status:8} {s.path}" + (f"  ({s.detail})" if s.detail else "") for s in statuses]
    if hints:
        lines += ["to get the missing files:"] + [f"  {h}" for h in hints]
    return "\n".join(lines)
