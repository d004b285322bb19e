"""The run record: its location, its JSON Schema (docs/record.md documents every key), and the atomic store."""
from __future__ import annotations

import json
import math
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from dpbench.run.record_history import keep_in_history
from dpbench.storage import atomic_write_bytes

SCHEMA_VERSION = 3
# v3 moved every data-dependent figure that ε does not cover into `outside_guarantee`; v2 records are read as v3
MIGRATED_VERSIONS = (2,)
V2_OUTSIDE_METRICS = ("accuracy_real_data",)  # v2's only metric computed on the private train split
RECORD_NAME = "record.json"
SAMPLES_NAME = "samples.png"
SCHEMA_PATH = Path(__file__).with_name("record_schema.json")


def epsilon_label(epsilon: float) -> str:
    if math.isinf(epsilon):
        return "inf"
    return f"{epsilon:g}"


def run_dir(out: Path, pair: str, method: str, preset: str, config_hash: str, epsilon: float, seed: int) -> Path:
    """<out>/<pair>/<method>/<preset>-<config hash>/eps<E>/seed<S>: presets and configs never collide."""
    return Path(out) / pair / method / f"{preset}-{config_hash}" / f"eps{epsilon_label(epsilon)}" / f"seed{seed}"


def encode_floats(value: Any) -> Any:
    """JSON has no inf/nan; write them as the strings "inf"/"-inf"/"nan" (read back by `decode_number`)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    if isinstance(value, dict):
        return {k: encode_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_floats(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def decode_number(value: Any) -> float | None:
    if value is None:
        return None
    return float(value)


@lru_cache(maxsize=1)
def record_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def validate_record(record: dict) -> None:
    """Raise jsonschema.ValidationError unless `record` (as it would be written) matches the current schema."""
    jsonschema.validate(encode_floats(record), record_schema())


def write_record(directory: Path, record: dict) -> Path:
    record = encode_floats(record)
    validate_record(record)
    path, content = Path(directory) / RECORD_NAME, (json.dumps(record, indent=2) + "\n").encode()
    keep_in_history(path, content)  # never overwritten in place: the record it replaces moves to history/
    atomic_write_bytes(path, content)
    return path


def migrate_record(record: dict) -> dict:
    """A v2 record as v3, in memory (its file is never rewritten): the non-finite example count, the overlap counts
    and the real-data ceiling move into `outside_guarantee`; `_migrated_from` says it was v2. Other versions are
    returned as they are."""
    if record.get("schema_version") not in MIGRATED_VERSIONS:
        return record
    outside: dict = {"metrics": {}}
    pair, privacy, metrics = record.get("pair", {}), record.get("privacy", {}), record.get("metrics", {})
    if "overlap" in pair:
        outside["overlap"] = pair.pop("overlap")
    if "nonfinite_examples" in privacy:
        outside["nonfinite_examples"] = privacy.pop("nonfinite_examples")
    for name in V2_OUTSIDE_METRICS:
        if name in metrics:
            outside["metrics"][name] = metrics.pop(name)
    record.update(schema_version=SCHEMA_VERSION, outside_guarantee=outside, _migrated_from=record["schema_version"])
    return record


def read_records(root: Path, *, current_only: bool = True) -> list[dict]:
    """Every record under `root`, v2 records migrated to v3 (`migrate_record`); records of another schema version
    are skipped with a warning naming them."""
    records, skipped = [], []
    for path in sorted(Path(root).rglob(RECORD_NAME)):
        with open(path) as handle:
            record = migrate_record(json.load(handle))
        if current_only and record.get("schema_version") != SCHEMA_VERSION:
            skipped.append(f"{path} (schema v{record.get('schema_version')})")
            continue
        record["_path"] = str(path)
        records.append(record)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} record(s) not in schema v{SCHEMA_VERSION} (re-run them to include "
                      f"them): {', '.join(skipped)}", stacklevel=2)
    return records
