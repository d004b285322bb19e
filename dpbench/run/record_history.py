"""A record is never overwritten in place. Before a run folder's record.json is replaced (a re-run after a code fix,
a re-score, a newer copy collected), its current content moves to history/record-<UTC time>.json beside it, named
by when that record finished (as lm-evaluation-harness timestamps its results files). record.json is always the
newest, so every reader that reads record.json takes the newest; history/ keeps the rest."""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from dpbench.storage import atomic_write_bytes

HISTORY_DIR = "history"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def record_time(record: dict) -> str:
    """When a record was last written, for ordering the records of one run folder: its last re-score
    (`dpbench evaluate`), else its finish time, else its start time (ISO 8601 in UTC, as
    `dpbench.run.environment.now` writes them); "" when it has none."""
    rescored = [entry.get("at") or "" for entry in record.get("rescored") or [] if isinstance(entry, dict)]
    return max([*rescored, record.get("finished_at") or record.get("started_at") or ""])


def _stamp(record: dict, path: Path | None) -> str:
    try:
        when = dt.datetime.fromisoformat(record_time(record))
    except ValueError:
        when = dt.datetime.fromtimestamp(path.stat().st_mtime if path is not None else 0, dt.timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).strftime(STAMP_FORMAT)


def keep_in_history(path: Path, replacement: bytes | None = None) -> Path | None:
    """Copy the record at `path` (about to be replaced by `replacement`) into its folder's history; returns the
    copy's path, or None when there is nothing to keep (no record yet, the same content again, or content the
    history holds already)."""
    path = Path(path)
    if not path.exists():
        return None
    content = path.read_bytes()
    return None if content == replacement else add_to_history(path.parent, content, path)


def add_to_history(run_dir: Path, content: bytes, path: Path | None = None) -> Path | None:
    """Keep `content` (a record's bytes) in `run_dir`/history/ as record-<its UTC time>.json (-2, -3, ... for
    another record of the same second), unless the history holds it already. `path` is the file it came from
    (its modification time stamps a record with no time of its own)."""
    try:
        record = json.loads(content)
    except ValueError:
        record = {}
    folder = Path(run_dir) / HISTORY_DIR
    stem = f"record-{_stamp(record if isinstance(record, dict) else {}, path)}"
    for attempt in range(1000):
        target = folder / (f"{stem}.json" if attempt == 0 else f"{stem}-{attempt + 1}.json")
        if not target.exists():
            atomic_write_bytes(target, content)
            return target
        if target.read_bytes() == content:
            return None
    raise FileExistsError(f"{folder} holds 1000 records stamped {stem}; clear the history by hand")


_NAME = re.compile(r"-(\d{8}T\d{6}Z)(?:-(\d+))?\.json$")


def history(run_dir: Path) -> list[Path]:
    """The earlier records of a run folder, oldest first (by stamp, then by the -2, -3 of one second's records)."""
    def order(path: Path) -> tuple[str, int]:
        match = _NAME.search(path.name)
        return (match.group(1), int(match.group(2) or 1)) if match else ("", 0)

    return sorted((Path(run_dir) / HISTORY_DIR).glob("*.json"), key=order)
