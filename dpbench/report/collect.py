"""Merge the completed records of one or more run roots (e.g. the nodes of a sweep) into the leaderboard's own
records folder, each run once."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from dpbench.report.recheck import privacy_problem
from dpbench.run.records import RECORD_NAME, SAMPLES_NAME, read_records
from dpbench.storage import atomic_write_bytes


def is_collectable(record: dict) -> bool:
    """Completed runs and audits; `dpbench tune`'s proxy trials (public data only) are never collected."""
    return record.get("status") == "completed" and "proxy" not in record.get("pair", {}).get("info", {})


def run_identity(root: Path, record: dict) -> str:
    """A run's directory relative to its root: pair/method/preset-confighash/eps/seed, the same on every node."""
    return Path(record["_path"]).parent.relative_to(root).as_posix()


def merged_sources(roots: list[Path]) -> dict[str, Path]:
    """Each run identity's source directory. A run found under several roots counts once: the first copy whose ε
    recomputes wins (a tampered copy never displaces a sound one), else the first copy; copies that differ are
    reported."""
    chosen: dict[str, tuple[Path, bool]] = {}
    conflicts = []
    for root in roots:
        for record in read_records(root):
            if not is_collectable(record):
                continue
            identity, source = run_identity(root, record), Path(record["_path"]).parent
            sound = privacy_problem(record) is None
            if identity not in chosen:
                chosen[identity] = (source, sound)
                continue
            kept, kept_sound = chosen[identity]
            if (kept / RECORD_NAME).read_bytes() != (source / RECORD_NAME).read_bytes():
                conflicts.append(f"{identity} ({kept} and {source})")
            if sound and not kept_sound:
                chosen[identity] = (source, sound)
    if conflicts:
        warnings.warn(f"{len(conflicts)} run(s) have differing records under several roots; kept the first whose ε "
                      f"recomputes: {'; '.join(conflicts)}", stacklevel=2)
    return {identity: source for identity, (source, _) in chosen.items()}


def held_by_another_run(kept: Path, incoming: Path) -> bool:
    """Whether the records folder's `kept` record.json is another run's than `incoming`'s (another start time):
    the same run may update its copy (re-scored by `dpbench evaluate`), another run never replaces it."""
    if not kept.exists():
        return False
    started = [json.loads(path.read_text()).get("started_at") for path in (kept, incoming)]
    return started[0] != started[1]


def collect_records(runs: Path | list[Path], records_dir: Path) -> int:
    """Copy every completed run's and audit's record.json and samples.png (never its synthetic set) from the run
    roots into the leaderboard's records folder, keeping the run's relative path; returns how many runs were
    copied. A record whose ε does not recompute is copied too: the page lists it, with the reason, under
    "Left out". A root that is the records folder itself is read in place. A record already in the folder is
    never replaced by another run's of the same identity (it is kept, with a warning naming both)."""
    roots = [Path(r) for r in ([runs] if isinstance(runs, (str, Path)) else runs)]
    records_dir = Path(records_dir)
    roots = [r for r in roots if r.exists() and r.resolve() != records_dir.resolve()]
    sources, refused = merged_sources(roots), []
    for identity, source in list(sources.items()):
        if held_by_another_run(records_dir / identity / RECORD_NAME, source / RECORD_NAME):
            refused.append(f"{records_dir / identity} (not replaced by {source})")
            del sources[identity]
            continue
        for name in (RECORD_NAME, SAMPLES_NAME):
            if (source / name).exists():
                atomic_write_bytes(records_dir / identity / name, (source / name).read_bytes())
    if refused:
        warnings.warn(f"{len(refused)} run(s) already hold another run's record in {records_dir}; kept them (delete "
                      f"one to replace it): {'; '.join(refused)}", stacklevel=2)
    return len(sources)
