"""One run, stage by stage: prepare (resolve, load, check, locate), train under DP (the method, through the
harness's engines), score (ledger check, samples, evaluators), write the record. It knows no method by name."""
from __future__ import annotations

import traceback
from pathlib import Path

import torch

from dpbench.api.context import EvalContext, MethodContext, PrivateSplit
from dpbench.api.registry import Registry
from dpbench.data.digest import data_digest
from dpbench.data.types import PairData
from dpbench.eval.cost import cost_section, reset_peak_memory
from dpbench.eval.sample_grid import save_sample_grid
from dpbench.privacy.accountant import DEFAULT_ACCOUNTANT, validate_ledger
from dpbench.privacy.books import PrivacyBooks
from dpbench.privacy.distributed import join_launched_world, launched_world_size
from dpbench.privacy.ledger import PrivacyLedger
from dpbench.run.config import run_config, run_location
from dpbench.run.curves import write_curves
from dpbench.run.environment import DeviceUnavailableError, concurrency_at_end, now, resolve_device
from dpbench.run.prepare import PreparedRun, prepare
from dpbench.run.progress import SilentProgress
from dpbench.run.record_sections import outside_section, privacy_section, started_record
from dpbench.run.records import SAMPLES_NAME, decode_number, epsilon_label, write_record
from dpbench.run.request import (LaunchedRunError, NoPrivateStepError, RunInputError, RunOutcome, RunRequest,
                                 check_delta, check_request, validate_budget)
from dpbench.run.resolve import Resolved, resolve
from dpbench.run.scoring import add_scores, check_result, draw_samples, evaluate_all
from dpbench.run.synthetic import save_synthetic
from dpbench.seeds import cell_seed, stream_seed

__all__ = ["execute", "RunRequest", "RunOutcome", "RunInputError", "LaunchedRunError", "NoPrivateStepError",
           "Resolved", "resolve", "run_config", "run_location", "check_delta", "validate_budget", "data_digest",
           "evaluate_all", "resolve_device"]


def execute(registry: Registry, request: RunRequest, progress, data: PairData | None = None) -> RunOutcome:
    """Run one benchmark cell. Input errors raise RunInputError/UnknownNameError before anything is written;
    a failure after that writes a record with status "failed" and the reason (never samples)."""
    check_request(request, resolve(registry, request).method, launched_world_size())
    if request.nproc > 1 and launched_world_size() == 1:
        return _run_under_torchrun(request)
    try:
        world, device = join_launched_world(resolve_device(request.device))  # world size 1 unless under torchrun
    except (ValueError, DeviceUnavailableError) as exc:
        raise RunInputError(str(exc)) from None
    progress = progress if world.is_leader else SilentProgress()
    run = prepare(registry, request, data, world)
    record = started_record(run, registry.origin.get(f"method:{run.resolved.method.name}"), world.size, device)
    ctx, books = _method_context(registry, run, world, device, progress)
    reset_peak_memory(device)
    samples = labels = None
    try:
        result = _train(run, ctx, books, record)
        if not world.is_leader:  # trained its share; rank 0 samples, evaluates and writes
            return RunOutcome(record=record, record_path=None, ok=True)
        samples, labels = _score(run, ctx, books, result, record, progress)
    except Exception as exc:
        record["status"] = "failed"
        record["error"] = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc(limit=8)}
        record["cost"] = record["cost"] or {"wall_seconds": dict(ctx.stage_seconds)}
    record["finished_at"] = now()
    concurrency_at_end(record["env"])
    if not world.is_leader:
        return RunOutcome(record=record, record_path=None, ok=False)
    return _write(run, record, samples, labels, books)


def _method_context(registry: Registry, run: PreparedRun, world, device: torch.device, progress):
    """The method's view of the run (public data, and private data only through the harness's privacy books,
    which the context keeps to itself), and the books, which the runner reads once the method is done."""
    request, method, data = run.request, run.resolved.method, run.data
    # the training streams (DP noise, Poisson sampling, the method's own) are keyed by the whole cell, so no two
    # cells share noise or sampling masks; sampling images and evaluation stay keyed by the seed alone, so every
    # method at that seed is scored the same way (paired comparisons)
    seed = cell_seed(request.seed, epsilon_label(request.epsilon), run.config_hash)
    books = private = None
    if method.trains_on_private:
        books = PrivacyBooks(data.private_train, epsilon=request.epsilon, delta=request.delta, device=device,
                             seed=seed, rng=request.rng, audit=request.audit, world=world,
                             checkpoints=None if world.is_distributed else run.checkpoints,
                             max_steps=request.max_steps, max_batch=request.max_batch)
        private = PrivateSplit(len(data.private_train), tuple(data.private_train.images.shape[1:]),
                               run.resolved.pair.num_classes)
    ctx = MethodContext(pair=run.resolved.pair, public=data.public_train, public_info=dict(data.info),
                        private=private, books=books, registry=registry, epsilon=request.epsilon, delta=request.delta,
                        seed=request.seed, cell_seed=seed, device=device, preset=request.preset, progress=progress,
                        cache_dir=Path(request.cache_dir), rebuild_backbone=request.rebuild_backbone, world=world,
                        max_steps=request.max_steps)
    return ctx, books


def _train(run: PreparedRun, ctx: MethodContext, books, record: dict):
    """The method trains; the harness composes its books' ledger and refuses an ε over the target."""
    request, method = run.request, run.resolved.method
    torch.manual_seed(stream_seed(ctx.cell_seed, "method"))
    result = method.train(ctx, run.resolved.settings)
    check_result(method, result)
    ledger = books.ledger(DEFAULT_ACCOUNTANT) if books is not None else PrivacyLedger(
        accountant=DEFAULT_ACCOUNTANT, delta=request.delta, epsilon_target=request.epsilon,
        n_private=len(run.data.private_train))
    if method.trains_on_private and ledger.steps == 0:
        raise NoPrivateStepError(f"method '{method.name}' declares that it trains on private data but took no "
                                 "private step: DP training must go through ctx.private_trainer(...)")
    epsilon = validate_ledger(ledger, epsilon_target=request.epsilon, delta=request.delta,
                              n_private=len(run.data.private_train))
    record["privacy"] = privacy_section(run, ledger, epsilon, books)
    outside_section(record, books)
    return result


def _first(split, n: int):
    return split if len(split) <= n else split.subset(torch.arange(n))


def _score(run: PreparedRun, ctx: MethodContext, books, result, record: dict, progress):
    """An audit's verdict, or the synthetic set and every evaluator's metrics; then the cost."""
    request, method, pair = run.request, run.resolved.method, run.resolved.pair
    samples = labels = None
    if request.audit is not None:  # the audit's model is its own: no samples, no evaluation
        record["audit"] = books.trainers[0].canaries.result(request.epsilon, request.delta)
    elif method.produces == "generator":
        with ctx.stage("sample"):
            samples, labels = draw_samples(result.artifact, run.resolved.settings, pair,
                                           stream_seed(request.seed, "images"), progress)
    if request.audit is None:
        public, test = run.data.public_train, run.data.private_test
        if request.max_samples is not None:  # a trial's public-only reference and test split: their first N images
            public, test = _first(public, request.max_samples), _first(test, request.max_samples)
        eval_ctx = EvalContext(pair=pair, public_train=public, private_test=test,
                               artifact=result.artifact, produces=method.produces, samples=samples,
                               sample_labels=labels, seed=stream_seed(request.seed, "evaluation"), device=ctx.device,
                               preset=request.preset, progress=progress, cache_dir=Path(request.cache_dir),
                               private_train=run.data.private_train, max_samples=request.max_samples)
        add_scores(record, evaluate_all(run.resolved.evaluators, eval_ctx, ctx.stage_seconds))
    record["cost"] = cost_section(ctx.stage_seconds, ctx.device, result.trainable_parameters,
                                  result.total_parameters)
    record["method"]["notes"] = result.notes
    record["status"] = "completed"
    return samples, labels


def _write(run: PreparedRun, record: dict, samples, labels, books=None) -> RunOutcome:
    """The synthetic set and its grid (completed runs only), the DP stages' curves, then the record, atomically."""
    completed = record["status"] == "completed"
    title = f"{run.resolved.method.name} on {run.resolved.pair.name}, target ε = {run.request.epsilon:g}"
    curves = write_curves(run.directory, books.trainers, run.request.delta, title) if books is not None else None
    if curves is not None:
        record["curves"] = curves
    if completed and samples is not None:
        record["synthetic"] = save_synthetic(run.directory, samples, labels)
        save_sample_grid(samples, labels, run.resolved.pair.num_classes, run.directory / SAMPLES_NAME)
    path = write_record(run.directory, record)
    if completed:
        run.checkpoints.clear()  # they hold generator state: as secret as the noise, and no longer needed
    return RunOutcome(record=record, record_path=path, ok=completed)


def _run_under_torchrun(request: RunRequest) -> RunOutcome:
    """The request as `nproc` torchrun processes; rank 0's record, as it wrote it."""
    from dpbench.run.launch import record_path, run_under_torchrun

    record, code = run_under_torchrun(request)
    if record is None:
        raise LaunchedRunError(f"the {request.nproc}-process run ended (torchrun exit code {code}) without a "
                               "record; the processes' errors are above")
    privacy = record["privacy"]
    for key in ("epsilon_target", "epsilon"):
        if key in privacy:
            privacy[key] = decode_number(privacy[key])
    return RunOutcome(record=record, record_path=record_path(request, record), ok=record["status"] == "completed")
