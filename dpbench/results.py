"""The run record: its schema, its location, and the atomic store."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
RECORD_NAME = "record.json"
SAMPLES_NAME = "samples.png"

REQUIRED_KEYS = ("schema_version", "status", "method", "pair", "seed", "privacy", "metrics", "cost", "env",
                 "started_at", "finished_at")
PRIVACY_KEYS = ("epsilon_target", "epsilon", "delta", "accountant", "noise_multiplier", "sample_rate", "steps",
                "max_grad_norm", "noise_multiplicity")


def epsilon_label(epsilon: float) -> str:
    if math.isinf(epsilon):
        return "inf"
    return f"{epsilon:g}"


def run_dir(out: Path, pair: str, method: str, epsilon: float, seed: int) -> Path:
    return Path(out) / pair / method / f"eps{epsilon_label(epsilon)}" / f"seed{seed}"


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _encode_floats(value: Any) -> Any:
    """JSON has no inf/nan; write them as the strings "inf"/"nan" (read back by `decode_number`)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    if isinstance(value, dict):
        return {k: _encode_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_floats(v) for v in value]
    return value


def decode_number(value: Any) -> float | None:
    if value is None:
        return None
    return float(value)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def validate_record(record: dict) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f"record is missing {missing}")
    if record["status"] not in ("completed", "failed"):
        raise ValueError(f"record status must be completed or failed, got {record['status']!r}")
    if record["status"] == "completed":
        missing_privacy = [k for k in PRIVACY_KEYS if k not in record["privacy"]]
        if missing_privacy:
            raise ValueError(f"record privacy section is missing {missing_privacy}")
        for name, metric in record["metrics"].items():
            if "value" not in metric or "higher_is_better" not in metric:
                raise ValueError(f"metric {name} needs value and higher_is_better")


def write_record(directory: Path, record: dict) -> Path:
    validate_record(record)
    path = Path(directory) / RECORD_NAME
    text = json.dumps(_encode_floats(record), indent=2, sort_keys=False, default=_json_default) + "\n"
    atomic_write_bytes(path, text.encode())
    return path


def read_records(root: Path) -> list[dict]:
    records = []
    for path in sorted(Path(root).rglob(RECORD_NAME)):
        with open(path) as handle:
            record = json.load(handle)
        record["_path"] = str(path)
        records.append(record)
    return records
