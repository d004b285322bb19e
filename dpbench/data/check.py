"""`dpbench data check` and `dpbench data overlap`: which files a pair has, and the near-duplicates between its
splits; and fetching what a pair can fetch (`dpbench run --download`)."""
from __future__ import annotations

import os
from typing import Any, Callable

from dpbench.data.file_report import format_report, resolve_data_root
from dpbench.data.types import DataMissingError


def download_pair(spec: Any, data_root: str | os.PathLike | None) -> None:
    """Fetch what the pair can fetch; a failed download is missing data (exit 2), not a crash."""
    if not spec.download:
        return
    try:
        spec.download(data_root)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; torchvision raises RuntimeError on bad files
        raise DataMissingError(f"could not download the files of pair '{spec.name}' ({type(exc).__name__}: {exc}). "
                               f"Put them under the data root by hand; `dpbench data check --pair {spec.name}` "
                               "lists the exact paths.") from exc


def splits_and_digest(spec: Any, data_root: str | os.PathLike | None) -> tuple[dict, str]:
    """The pair's three image splits by name, and the digest of its data (loaded and checked as a run loads it)."""
    from dpbench.data.digest import data_digest
    from dpbench.data.loading import image_splits, load_checked

    pair_data = load_checked(spec, data_root)
    return image_splits(pair_data), data_digest(pair_data)


def overlap_counts(spec: Any, data_root: str | os.PathLike | None, cache_dir: os.PathLike,
                   warn: Callable[[str], None]) -> tuple[dict | None, dict]:
    """The pair's near-duplicate counts (cached by data digest) and, per capped comparison, (verified, hash
    candidates): its count is a lower bound. (None, {}), with a warning, when its data cannot be read."""
    from dpbench.data.overlap import cached_overlap, overlap_summary

    try:
        splits, digest = splits_and_digest(spec, data_root)
    except Exception as exc:  # the file report already names what is wrong
        warn(f"  (overlap not computed: {type(exc).__name__}: {exc})")
        return None, {}
    result = cached_overlap(spec.name, splits, digest, cache_dir)
    capped = {name: {"verified_candidates": c["verified_candidates"], "hash_candidates": c["hash_candidates"],
                     "hash_candidates_capped": c["hash_candidates_capped"]}
              for name, c in result["comparisons"].items() if c.get("capped")}
    return overlap_summary(result), capped


def check_pair(spec: Any, data_root: str | os.PathLike | None, cache_dir: os.PathLike,
               warn: Callable[[str], None]) -> dict:
    """One pair's entry of `dpbench data check --json`: its files' statuses and, when usable, its overlap."""
    statuses = spec.check_files(data_root) if spec.check_files else []
    ready = all(s.status == "present" for s in statuses)
    overlap, capped = overlap_counts(spec, data_root, cache_dir, warn) if ready else (None, {})
    return {"pair": spec.name, "ready": ready, "needs_files": bool(spec.check_files),
            "files": [{"path": s.path, "status": s.status, "detail": s.detail} for s in statuses],
            "overlap": overlap, "overlap_capped": capped, "_statuses": statuses}


def check_text(entry: dict, data_root: str | os.PathLike | None) -> str:
    """The text `dpbench data check` prints for one pair's entry."""
    statuses = entry["_statuses"]
    if statuses:
        text = format_report(entry["pair"], resolve_data_root(data_root), statuses, [])
    else:
        text = f"pair {entry['pair']!r}: embedded, needs no files"
    if entry["overlap"] is not None:
        capped = entry["overlap_capped"]
        text += "\n  near-duplicates: " + ", ".join(f"{k} {'>= ' if k in capped else ''}{v}"
                                                    for k, v in entry["overlap"].items())
        for name, c in capped.items():
            text += (f"\n  capped: {name} verified {c['verified_candidates']:,} of "
                     f"{'at least ' if c['hash_candidates_capped'] else ''}{c['hash_candidates']:,} hash candidates, "
                     "so its count is a lower bound (`dpbench data overlap --json` has the details)")
    return text + ("\n  => ready" if entry["ready"] else "\n  => NOT ready") + "\n"


def check_pairs(registry: Any, pair_name: str | None, data_root: str | os.PathLike | None, cache_dir: os.PathLike,
                *, echo: Callable[[str], None] | None, warn: Callable[[str], None]) -> tuple[list[dict], bool]:
    """Check the named pair (every registered pair when None), printing each one's text through `echo` as it goes
    (unless None): the JSON report and whether every pair is usable."""
    specs = [registry.pair(pair_name)] if pair_name else [registry.pairs[n] for n in sorted(registry.pairs)]
    report = []
    for spec in specs:
        entry = check_pair(spec, data_root, cache_dir, warn)
        if echo is not None:
            echo(check_text(entry, data_root))
        del entry["_statuses"]
        report.append(entry)
    return report, all(entry["ready"] for entry in report)


def overlap_text(pair: str, result: dict) -> str:
    """The text `dpbench data overlap` prints."""
    lines = [f"pair {pair!r}: {result['method']}; Hamming <= {result['threshold']}, "
             f"correlation >= {result['min_correlation']}"]
    for name, counts in result["comparisons"].items():
        examples = ", ".join(f"({a}, {b})" for a, b, _ in counts["examples"])
        lines.append(f"  {name:30} {counts['near_duplicates']:6} near-duplicates, {counts['images_matched']} images"
                     f" matched, {counts['hash_candidates']} hash candidates" + (f"; e.g. {examples}" if examples else ""))
    return "\n".join(lines)


def public_private_shared(result: dict) -> int:
    """Near-duplicates shared between the public split and a private one (`data overlap` exits 1 when any)."""
    return sum(c["near_duplicates"] for n, c in result["comparisons"].items() if n.startswith("public~"))
