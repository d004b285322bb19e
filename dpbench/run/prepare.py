"""One prepare step for every command that runs or plans a run: resolve the request, load and check the data,
digest it, check δ, find the config hash and the record's folder; for a run about to train, also the overlap
check, the checkpoint plan and the warnings. `dpbench run`, `sweep`, `tune` and `audit` all go through here."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dpbench.api.registry import Registry
from dpbench.data.digest import data_digest
from dpbench.data.loading import PairLoadError, check, image_splits, load_checked
from dpbench.data.overlap import cached_overlap, overlap_summary
from dpbench.data.types import PairData
from dpbench.privacy.checkpoint import CheckpointMismatchError, CheckpointPlan
from dpbench.privacy.distributed import SINGLE, World
from dpbench.run.config import run_location
from dpbench.run.memory import check_fits
from dpbench.run.request import RunInputError, RunRequest, check_delta, check_request
from dpbench.run.resolve import Resolved, resolve


@dataclass
class RunPlan:
    """A checked request: what runs, on which data, under which config hash, and where its record goes."""

    request: RunRequest
    resolved: Resolved
    data: PairData
    digest: str
    large_delta: bool
    config: dict
    config_hash: str
    directory: Path


@dataclass
class PreparedRun(RunPlan):
    """A plan about to train: with its overlap counts, checkpoints and warnings."""

    overlap: dict = field(default_factory=dict)
    checkpoints: CheckpointPlan | None = None
    warnings: list[str] = field(default_factory=list)


def load_data(registry: Registry, request: RunRequest) -> PairData:
    """The request's pair data, checked (RunInputError for a loader that breaks; DataMissingError propagates)."""
    try:
        return load_checked(registry.pair(request.pair), request.data_root)
    except PairLoadError as exc:
        raise RunInputError(str(exc)) from None


def plan_run(registry: Registry, request: RunRequest, data: PairData | None = None, *, digest: str | None = None,
             world_size: int = 1) -> RunPlan:
    """Check everything that can be checked before a run starts; raises RunInputError/UnknownNameError (or
    DataMissingError) and writes nothing."""
    resolved = resolve(registry, request)
    check_request(request, resolved.method, world_size)
    if data is None:
        data = load_data(registry, request)
    else:
        try:
            check(resolved.pair, data)
        except PairLoadError as exc:
            raise RunInputError(str(exc)) from None
    digest = digest or data_digest(data)
    large_delta = check_delta(request, resolved.method, resolved.pair.name, len(data.private_train))
    check_fits(data, resolved.pair, resolved.settings, resolved.method.trains_on_private)
    config, config_hash, directory = run_location(request, resolved, digest)
    return RunPlan(request, resolved, data, digest, large_delta, config, config_hash, directory)


def prepare(registry: Registry, request: RunRequest, data: PairData | None = None, world: World = SINGLE,
            ) -> PreparedRun:
    """The plan, plus the near-duplicate check (rank 0 fills its cache first), the checkpoint plan (cleared
    unless resuming) and the run's warnings."""
    plan = plan_run(registry, request, data, world_size=world.size)
    pair = plan.resolved.pair
    with world.leader_first():
        overlap = overlap_summary(cached_overlap(pair.name, image_splits(plan.data), plan.digest, request.cache_dir))
    checkpoints = CheckpointPlan(plan.directory, request.checkpoint_every,
                                 {"config_hash": plan.config_hash, "data_digest": plan.digest}, resume=request.resume)
    if request.resume:
        try:
            checkpoints.check_all()
        except CheckpointMismatchError as exc:
            raise RunInputError(str(exc)) from None
    elif world.is_leader:
        checkpoints.clear()  # a killed earlier attempt's state; this run starts over
    return PreparedRun(**vars(plan), overlap=overlap, checkpoints=checkpoints, warnings=_warnings(plan, overlap))


def _warnings(plan: RunPlan, overlap: dict) -> list[str]:
    pair_name, delta = plan.resolved.pair.name, plan.request.delta
    warnings = list(plan.data.info.get("warnings", []))
    warnings += [f"{count} near-duplicate(s) between {name.replace('~', ' and ')}: private images may have been seen "
                 f"in public pre-training (`dpbench data overlap --pair {pair_name}` lists them)"
                 for name, count in overlap.items() if count and name.startswith("public~")]
    if plan.large_delta:
        warnings.append(f"delta={delta:g} >= 1/n_private={1 / len(plan.data.private_train):.3g}: allowed by "
                        "--allow-large-delta; this run's guarantee permits releasing a whole record")
    return warnings
