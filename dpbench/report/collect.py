"""Merge the completed records of one or more run roots (e.g. the nodes of a sweep) into the leaderboard's own
records folder, each run once, the newest shown and every other kept in its history."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from dpbench.report.recheck import privacy_problem
from dpbench.run.record_history import add_to_history, history, keep_in_history, record_time
from dpbench.run.curves import CURVES_CSV, CURVES_PNG
from dpbench.run.records import RECORD_NAME, SAMPLES_NAME, read_records
from dpbench.storage import atomic_write_bytes


def is_collectable(record: dict) -> bool:
    """Completed runs and audits; `dpbench tune`'s proxy trials (public data only) are never collected."""
    return record.get("status") == "completed" and "proxy" not in record.get("pair", {}).get("info", {})


def run_identity(root: Path, record: dict) -> str:
    """A run's directory relative to its root: pair/method/preset-confighash/eps/seed, the same on every node."""
    return Path(record["_path"]).parent.relative_to(root).as_posix()


def merged_sources(roots: list[Path]) -> dict[str, list[Path]]:
    """Each run identity's source directories, the one to show first: a copy whose ε recomputes before one whose ε
    does not (a tampered copy never displaces a sound one), then the newest (finished last). Copies that differ are
    reported; the others are kept in the records folder's history."""
    found: dict[str, list[tuple[bool, str, Path]]] = {}
    for root in roots:
        for record in read_records(root):
            if is_collectable(record):
                found.setdefault(run_identity(root, record), []).append(
                    (privacy_problem(record) is None, record_time(record), Path(record["_path"]).parent))
    chosen, conflicts = {}, []
    for identity, copies in found.items():
        ordered = [source for _, _, source in sorted(copies, key=lambda c: (c[0], c[1]), reverse=True)]
        if len({(source / RECORD_NAME).read_bytes() for source in ordered}) > 1:
            conflicts.append(f"{identity} ({' and '.join(map(str, ordered))})")
        chosen[identity] = ordered
    if conflicts:
        warnings.warn(f"{len(conflicts)} run(s) have differing records under several roots; showing the newest whose "
                      f"ε recomputes, the others kept in history/: {'; '.join(conflicts)}", stacklevel=2)
    return chosen


def _newer(incoming: Path, kept: Path) -> bool:
    """Whether the record at `incoming` is to be shown instead of the one at `kept`: sound before tampered, then
    the one that finished last."""
    a, b = (json.loads(path.read_text()) for path in (incoming, kept))
    return (privacy_problem(a) is None, record_time(a)) > (privacy_problem(b) is None, record_time(b))


def collect_records(runs: Path | list[Path], records_dir: Path) -> int:
    """Copy every completed run's and audit's record.json, samples.png and training curves (never its synthetic set)
    from the run roots into the leaderboard's records folder, keeping the run's relative path; returns how many runs were
    collected. A record whose ε does not recompute is copied too: the page lists it, with the reason, under
    "Left out". A root that is the records folder itself is read in place.

    Nothing is overwritten in place: of every record of one run identity (the folder's, each root's, and the
    histories beside them) the newest whose ε recomputes is record.json, and every other one is kept in
    history/ beside it (dpbench.run.record_history)."""
    roots = [Path(r) for r in ([runs] if isinstance(runs, (str, Path)) else runs)]
    records_dir = Path(records_dir)
    roots = [r for r in roots if r.exists() and r.resolve() != records_dir.resolve()]
    sources_by_run = merged_sources(roots)
    for identity, sources in sources_by_run.items():
        target = records_dir / identity
        for source in reversed(sources):  # the best last, so that it ends up as record.json
            for earlier in history(source):
                add_to_history(target, earlier.read_bytes())
            incoming, kept = source / RECORD_NAME, target / RECORD_NAME
            if kept.exists() and kept.read_bytes() == incoming.read_bytes():
                continue
            if kept.exists() and not _newer(incoming, kept):
                add_to_history(target, incoming.read_bytes())
                continue
            keep_in_history(kept, incoming.read_bytes())
            for name in (RECORD_NAME, SAMPLES_NAME, CURVES_PNG, CURVES_CSV):
                if (source / name).exists():
                    atomic_write_bytes(target / name, (source / name).read_bytes())
    return len(sources_by_run)
