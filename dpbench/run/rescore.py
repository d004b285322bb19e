"""`dpbench evaluate RUN_DIR`: re-score a finished generator run from its synthetic.npz, without sampling again."""
from __future__ import annotations

import json
from pathlib import Path


from dpbench.api.context import EvalContext
from dpbench.api.registry import Registry
from dpbench.run.records import RECORD_NAME, SCHEMA_VERSION, migrate_record, write_record
from dpbench.data.digest import data_digest
from dpbench.data.loading import PairLoadError, load_checked
from dpbench.run.environment import now, resolve_device, software_env
from dpbench.run.request import RunInputError
from dpbench.run.scoring import add_scores, evaluate_all
from dpbench.run.synthetic import load_synthetic
from dpbench.seeds import stream_seed
from dpbench.storage import default_cache_dir


def rescore(registry: Registry, run_dir: Path, progress, *, evaluators: list[str] | None = None,
            data_root: str | None = None, device: str = "auto", cache_dir: Path | None = None) -> dict:
    """Run `evaluators` (default: every registered one that scores generators) on the run's saved synthetic set
    and write the updated record atomically. The pair's data must be the data the run used (same digest)."""
    path = Path(run_dir) / RECORD_NAME
    if not path.exists():
        raise RunInputError(f"{run_dir} holds no {RECORD_NAME}")
    record = migrate_record(json.loads(path.read_text()))  # a v2 record is re-written as v3
    record.pop("_migrated_from", None)
    if record.get("schema_version") != SCHEMA_VERSION:
        raise RunInputError(f"{path} is a schema v{record.get('schema_version')} record; only records of schema v2 "
                            "or later carry a synthetic set")
    if record["status"] != "completed" or "synthetic" not in record:
        raise RunInputError(f"{path} is not a completed generator run with a synthetic set")
    pair = registry.pair(record["pair"]["name"])
    names = evaluators if evaluators is not None else list(registry.evaluators)
    chosen = [registry.evaluator(name) for name in names]
    chosen = [e for e in chosen if "generator" in e.applies_to]
    if not chosen:
        raise RunInputError("no evaluator that scores generators was chosen")
    samples, labels = load_synthetic(path.parent, record["synthetic"])
    try:
        data = load_checked(pair, data_root)
    except PairLoadError as exc:
        raise RunInputError(str(exc)) from None
    if data_digest(data) != record["pair"]["data_digest"]:
        raise RunInputError(f"the data of pair '{pair.name}' differs from the data this run used "
                            f"(digest {record['pair']['data_digest']}); re-scoring it would compare other data")
    torch_device = resolve_device(device)
    ctx = EvalContext(pair=pair, public_train=data.public_train, private_test=data.private_test, artifact=None,
                      produces="generator", samples=samples, sample_labels=labels, seed=stream_seed(record["seed"], "evaluation"),
                      device=torch_device, preset=record["preset"], progress=progress, cache_dir=Path(cache_dir or default_cache_dir()),
                      private_train=data.private_train)
    seconds: dict[str, float] = {}
    add_scores(record, evaluate_all(chosen, ctx, seconds))
    record.setdefault("rescored", []).append({
        "at": now(), "evaluators": {e.name: e.settings(record["preset"]) for e in chosen},
        "env": {**software_env(torch_device), "wall_seconds": {k: round(v, 3) for k, v in seconds.items()}},
    })
    write_record(path.parent, record)
    return record
