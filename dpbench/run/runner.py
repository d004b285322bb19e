"""One run, stage by stage: resolve, load, fine-tune under DP (the method, through the harness's engines),
compose and check the ledger, sample, evaluate, write the record. The runner knows no method by name."""
from __future__ import annotations

import datetime as dt
import math
import platform
import subprocess
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import dpbench
from dpbench.api.context import EvalContext, MethodContext, PrivateSplit, StageTimer
from dpbench.api.registry import API_VERSION, Registry
from dpbench.api.settings import SettingError, apply_overrides, as_dict, check
from dpbench.api.types import PRESETS, Classifier, Generator, Method, MethodResult
from dpbench.data.overlap import cached_overlap, overlap_summary
from dpbench.data.types import BadPairDataError, DataMissingError, PairData, check_pair_data
from dpbench.eval.cost import cost_section, reset_peak_memory
from dpbench.eval.sample_grid import save_sample_grid
from dpbench.privacy.accountant import DEFAULT_ACCOUNTANT, validate_ledger
from dpbench.privacy.audit import AuditSettings
from dpbench.privacy.books import PrivacyBooks
from dpbench.privacy.checkpoint import CheckpointMismatchError, CheckpointPlan
from dpbench.privacy.distributed import join_launched_world, launched_world_size
from dpbench.privacy.randomness import RECORD_LABEL, RNG_KINDS
from dpbench.privacy.engine import DEFAULT_PHYSICAL_BATCH
from dpbench.privacy.ledger import PrivacyLedger
from dpbench.privacy.per_example.choice import CHUNKING, TABLE as PER_EXAMPLE_TABLE
from dpbench.run.progress import SilentProgress
from dpbench.run.records import SAMPLES_NAME, SCHEMA_VERSION, decode_number, run_dir, write_record
from dpbench.run.synthetic import save_synthetic
from dpbench.seeds import stream_seed
from dpbench.storage import cache_key, tensor_digest


class RunInputError(ValueError):
    """Bad user input, found before anything is written (CLI exit 2)."""


class LaunchedRunError(RuntimeError):
    """The processes of a `nproc` > 1 run ended without a record (CLI exit 1)."""


class NoPrivateStepError(RuntimeError):
    """A method that trains on private data returned without taking a single private step."""


@dataclass
class RunRequest:
    method: str
    pair: str
    epsilon: float
    delta: float = 1e-5
    seed: int = 0
    preset: str = "default"
    out: Path = Path("runs")
    device: str = "auto"
    cache_dir: Path = Path(".dpbench-cache")
    data_root: str | None = None
    evaluators: list[str] | None = None  # None: every registered evaluator that applies
    overrides: dict = field(default_factory=dict)  # setting -> text (parsed by type) or typed value
    rebuild_backbone: bool = False
    allow_large_delta: bool = False  # δ >= 1/n_private is refused unless the user says so; the record marks it
    rng: str = "seeded"  # the DP noise and sampling: "seeded" (a reproducible simulation), "os-seeded", "secure"
    resume: bool = False  # continue DP training from the run folder's checkpoints
    checkpoint_every: int = 50  # DP steps between checkpoints
    audit: AuditSettings | None = None  # an audit run: canaries in the first DP stage, no sampling or evaluation
    nproc: int = 1  # data-parallel processes on this node; > 1 relaunches the run under torchrun (run/launch.py)


@dataclass
class RunOutcome:
    record: dict
    record_path: Path | None  # None on a data-parallel rank other than 0: only rank 0 writes
    ok: bool


@dataclass
class Resolved:
    method: Method
    pair: Any
    evaluators: list
    settings: Any
    backbone: Any = None  # the BackboneBuilder the settings name, when they name a registered one


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RunInputError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(name)


def validate_budget(epsilon: float, delta: float, method: Method | None = None) -> None:
    if method is not None and not method.trains_on_private:
        if epsilon != 0:
            raise RunInputError(f"method '{method.name}' never touches private data; run it with --eps 0, got {epsilon}")
    elif math.isnan(epsilon) or epsilon <= 0:
        raise RunInputError(f"epsilon must be > 0 (or inf for a non-private run), got {epsilon}")
    if not 0 < delta < 1:
        raise RunInputError(f"delta must be in (0, 1), got {delta}")


def resolve(registry: Registry, request: RunRequest) -> Resolved:
    """Look everything up and check the inputs; raises before anything is written."""
    method = registry.method(request.method)
    pair = registry.pair(request.pair)
    if request.preset not in PRESETS:
        raise RunInputError(f"unknown preset '{request.preset}', expected one of {PRESETS}")
    validate_budget(request.epsilon, request.delta, method)
    evaluator_names = request.evaluators if request.evaluators is not None else list(registry.evaluators)
    evaluators = [registry.evaluator(name) for name in evaluator_names]
    evaluators = [e for e in evaluators if method.produces in e.applies_to]
    settings = method.settings(request.preset, pair)
    try:
        check(settings)
        settings = apply_overrides(settings, request.overrides)
        method.validate(settings, registry)
    except SettingError as exc:
        raise RunInputError(f"bad setting for method '{method.name}': {exc}") from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise RunInputError(f"bad setting for method '{method.name}': {exc}") from exc
    backbone_name = getattr(settings, "backbone", None)
    backbone = registry.backbone(backbone_name) if backbone_name in registry.backbones else None
    return Resolved(method, pair, evaluators, settings, backbone)


def data_digest(data: PairData) -> str:
    """A digest of every split's pixels and labels: a changed dataset is a different config."""
    splits = (data.public_train, data.private_train, data.private_test)
    return tensor_digest(*[t for s in splits for t in (s.images, s.labels)])


def check_delta(request: RunRequest, method, pair_name: str, n_private: int) -> bool:
    """Whether δ >= 1/n_private for a method that trains on private data; RunInputError unless the request
    allows it (a sweep checks every cell this way before running any)."""
    large_delta = method.trains_on_private and request.delta >= 1 / n_private
    if large_delta and not request.allow_large_delta:
        raise RunInputError(f"delta={request.delta:g} >= 1/n_private={1 / n_private:.3g} for pair '{pair_name}': such a "
                            "delta permits releasing a whole record, so the run would not be private; pass a "
                            "smaller --delta (or --allow-large-delta to run it anyway, marked in the record)")
    return large_delta


# Settings added after records were written, with the default that reproduces those records: at that default a
# setting stays out of the hash, so earlier hashes stand; any other value is hashed.
LATE_SETTINGS = {"physical_batch_size": DEFAULT_PHYSICAL_BATCH, "min_timestep": 0}


def hashed_settings(settings) -> dict:
    """The method's settings as the config hash sees them (less `LATE_SETTINGS` at their defaults)."""
    values = as_dict(settings)
    for name, default in LATE_SETTINGS.items():
        if name in values and values[name] == default:
            del values[name]
    return values


def run_config(request: RunRequest, resolved: Resolved, digest: str) -> dict:
    """What the record's config hash covers. ε and the seed have folders of their own; the code version is
    recorded, not hashed."""
    return {
        "method": resolved.method.name, "settings": hashed_settings(resolved.settings), "preset": request.preset,
        "pair": resolved.pair.name, "data_digest": digest, "delta": request.delta,
        "evaluators": {e.name: e.settings(request.preset) for e in resolved.evaluators},
        **({"rng": request.rng} if request.rng != "seeded" else {}),  # seeded runs keep their earlier hashes
        **({"audit": request.audit.to_dict()} if request.audit is not None else {}),
        # the per-example gradient implementation per scope: a resumed run keeps the one it started with; a table
        # of torch.func's alone (the engine before issue 12) keeps the earlier hashes
        **({"per_example": dict(PER_EXAMPLE_TABLE)} if set(PER_EXAMPLE_TABLE.values()) != {"vmap"} else {}),
        # how a step's K draws are chunked decides which draws each example gets; at K = 1 every chunking is the same
        **({"chunking": dict(CHUNKING)} if getattr(resolved.settings, "noise_multiplicity", 1) > 1 else {}),
        # another backbone recipe is another run: a sweep never skips, and a resume never continues, a cell whose
        # backbone was re-trained; a backbone still at its first recipe keeps the earlier hashes
        **({"backbone_recipe": {resolved.backbone.name: version}}
           if (version := getattr(resolved.backbone, "recipe_version", None)) not in (None, 1) else {}),
    }


def run_location(request: RunRequest, resolved: Resolved, digest: str) -> tuple[dict, str, Path]:
    """The run's config, its config hash and the folder its record goes to (a sweep looks there before running)."""
    config = run_config(request, resolved, digest)
    config_hash = cache_key(config, length=10)
    return config, config_hash, run_dir(request.out, resolved.pair.name, resolved.method.name, request.preset,
                                        config_hash, request.epsilon, request.seed)


def execute(registry: Registry, request: RunRequest, progress, data: PairData | None = None) -> RunOutcome:
    """Run one benchmark cell. Input errors raise RunInputError/UnknownNameError before anything is written;
    a failure after that writes a record with status "failed" and the reason (never samples)."""
    if request.rng not in RNG_KINDS:
        raise RunInputError(f"rng must be one of {', '.join(RNG_KINDS)}, got '{request.rng}'")
    resolved = resolve(registry, request)
    method, pair, settings = resolved.method, resolved.pair, resolved.settings
    if request.audit is not None and not (method.trains_on_private and 0 < request.epsilon < math.inf):
        raise RunInputError(f"an audit needs a method that trains on private data at a finite ε > 0; got "
                            f"'{method.name}' at ε = {request.epsilon:g}")
    _check_world_size(request)
    if request.nproc > 1 and launched_world_size() == 1:
        return _run_under_torchrun(request)
    try:
        world, device = join_launched_world(resolve_device(request.device))  # world size 1 unless under torchrun
    except ValueError as exc:
        raise RunInputError(str(exc)) from None
    progress = progress if world.is_leader else SilentProgress()
    if data is None:
        try:
            data = pair.load(request.data_root)  # DataMissingError propagates: nothing written yet
        except (DataMissingError, RunInputError):
            raise
        except Exception as exc:  # a loader that breaks on its own data: name the pair, write nothing
            raise RunInputError(f"pair '{pair.name}' could not load its data: {type(exc).__name__}: {exc}") from exc
    try:
        check_pair_data(pair, data)
    except BadPairDataError as exc:
        raise RunInputError(str(exc)) from None
    digest = data_digest(data)
    with world.leader_first():  # rank 0 fills the cache, the others read it
        overlap = overlap_summary(cached_overlap(pair.name, {"public": data.public_train.images,
                                                             "private_train": data.private_train.images,
                                                             "private_test": data.private_test.images},
                                                 digest, request.cache_dir))
    config, config_hash, directory = run_location(request, resolved, digest)
    checkpoints = CheckpointPlan(directory, request.checkpoint_every, {"config_hash": config_hash, "data_digest": digest},
                                 resume=request.resume)
    if request.resume:
        try:
            checkpoints.check_all()
        except CheckpointMismatchError as exc:
            raise RunInputError(str(exc)) from None
    elif world.is_leader:
        checkpoints.clear()  # a killed earlier attempt's state; this run starts over
    origin = registry.origin.get(f"method:{method.name}")
    warnings = list(data.info.get("warnings", []))
    warnings += [f"{count} near-duplicate(s) between {name.replace('~', ' and ')}: private images may have been seen "
                 f"in public pre-training (`dpbench data overlap --pair {pair.name}` lists them)"
                 for name, count in overlap.items() if count and name.startswith("public~")]
    n_private = len(data.private_train)
    large_delta = check_delta(request, method, pair.name, n_private)
    if large_delta:
        warnings.append(f"delta={request.delta:g} >= 1/n_private={1 / n_private:.3g}: allowed by --allow-large-delta; "
                        "this run's guarantee permits releasing a whole record")
    record = {
        "schema_version": SCHEMA_VERSION, "status": "running", "kind": "audit" if request.audit else "run",
        "method": {"name": method.name, "produces": method.produces, "reference": method.reference,
                   "settings": as_dict(settings), "overrides": dict(request.overrides),
                   "plugin": {"name": origin.name if origin else None, "distribution": origin.distribution if origin else None,
                              "version": origin.version if origin else None}},
        "pair": {"name": pair.name, "data_digest": digest, "n_public": len(data.public_train),
                 "n_private_train": n_private, "n_private_test": len(data.private_test), "overlap": overlap,
                 "info": _plain_info(data.info)},
        "preset": request.preset, "seed": request.seed, "config_hash": config_hash, "config": config,
        "world_size": world.size, "warnings": warnings,
        "privacy": {"epsilon_target": request.epsilon, "delta": request.delta, "large_delta": large_delta},
        "metrics": {}, "cost": {}, "env": _env(device), "started_at": _now(), "finished_at": None,
    }
    books = PrivacyBooks(data.private_train, epsilon=request.epsilon, delta=request.delta, device=device,
                         seed=request.seed, rng=request.rng, audit=request.audit, world=world,
                         checkpoints=None if world.is_distributed else checkpoints) \
        if method.trains_on_private else None
    private = PrivateSplit(n_private, tuple(data.private_train.images.shape[1:]), pair.num_classes) \
        if method.trains_on_private else None
    ctx = MethodContext(pair=pair, public=data.public_train, public_info=dict(data.info), private=private,
                        books=books, registry=registry, epsilon=request.epsilon, delta=request.delta,
                        seed=request.seed, device=device, preset=request.preset, progress=progress,
                        cache_dir=Path(request.cache_dir), rebuild_backbone=request.rebuild_backbone, world=world)
    reset_peak_memory(device)
    samples = labels = None
    try:
        torch.manual_seed(stream_seed(request.seed, "method"))
        result = method.train(ctx, settings)
        _check_result(method, result)
        ledger = books.ledger(DEFAULT_ACCOUNTANT) if books is not None else PrivacyLedger(
            accountant=DEFAULT_ACCOUNTANT, delta=request.delta, epsilon_target=request.epsilon, n_private=n_private)
        if method.trains_on_private and ledger.steps == 0:
            raise NoPrivateStepError(f"method '{method.name}' declares that it trains on private data but took no "
                                     "private step: DP training must go through ctx.private_trainer(...)")
        epsilon = validate_ledger(ledger, epsilon_target=request.epsilon, delta=request.delta, n_private=n_private)
        record["privacy"] = {"epsilon_target": request.epsilon, "epsilon": epsilon, "delta": request.delta,
                             "large_delta": large_delta, "rng": RECORD_LABEL[request.rng],
                             "resumed_from_steps": [t.resumed_from_step for t in books.trainers] if books else [],
                             "private": ledger.is_private and ledger.steps > 0,
                             "nonfinite_examples": books.nonfinite_examples if books is not None else 0,
                             **{k: v for k, v in ledger.to_dict().items() if k not in ("epsilon_target", "delta")}}
        if not world.is_leader:  # trained its share; rank 0 samples, evaluates and writes
            return RunOutcome(record=record, record_path=None, ok=True)
        if request.audit is not None:  # the audit's model is its own: no samples, no evaluation
            record["audit"] = books.trainers[0].canaries.result(request.epsilon, request.delta)
        elif method.produces == "generator":
            labels = torch.arange(pair.num_classes).repeat_interleave(_samples_per_class(settings))
            with ctx.stage("sample"):
                samples = result.artifact.sample(labels, seed=stream_seed(request.seed, "images"),
                                                 progress=progress).cpu()
            _check_samples(samples, labels, pair)
        eval_ctx = EvalContext(pair=pair, public_train=data.public_train, private_test=data.private_test,
                               artifact=result.artifact, produces=method.produces, samples=samples,
                               sample_labels=labels, seed=stream_seed(request.seed, "evaluation"), device=device,
                               preset=request.preset,
                               progress=progress, cache_dir=Path(request.cache_dir), private_train=data.private_train)
        if request.audit is None:
            record["metrics"].update(evaluate_all(resolved.evaluators, eval_ctx, ctx.stage_seconds))
        record["cost"] = cost_section(ctx.stage_seconds, device, result.trainable_parameters, result.total_parameters)
        record["method"]["notes"] = result.notes
        record["status"] = "completed"
    except Exception as exc:
        record["status"] = "failed"
        record["error"] = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc(limit=8)}
        record["cost"] = record["cost"] or {"wall_seconds": dict(ctx.stage_seconds)}
    record["finished_at"] = _now()
    if not world.is_leader:
        return RunOutcome(record=record, record_path=None, ok=False)
    if record["status"] == "completed" and samples is not None:
        record["synthetic"] = save_synthetic(directory, samples, labels)
        save_sample_grid(samples, labels, pair.num_classes, directory / SAMPLES_NAME)
    path = write_record(directory, record)
    if record["status"] == "completed":
        checkpoints.clear()  # they hold generator state: as secret as the noise, and no longer needed
    return RunOutcome(record=record, record_path=path, ok=record["status"] == "completed")


def _check_world_size(request: RunRequest) -> None:
    """Refuse what a data-parallel run does not support, before anything is launched or written."""
    world_size = launched_world_size()
    if isinstance(request.nproc, bool) or not isinstance(request.nproc, int) or request.nproc < 1:
        raise RunInputError(f"nproc must be an int >= 1, got {request.nproc!r}")
    if world_size > 1 and request.nproc not in (1, world_size):
        raise RunInputError(f"nproc {request.nproc} inside a torchrun world of {world_size} processes")
    if max(request.nproc, world_size) == 1:
        return
    if request.audit is not None:
        raise RunInputError("an audit runs in one process: its canaries are not sharded over data-parallel ranks; "
                            "run it without --nproc or torchrun")
    if request.resume:
        raise RunInputError("--resume is single-process only: a data-parallel run keeps no checkpoints; start it "
                            "again without --resume")


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


def evaluate_all(evaluators, eval_ctx: EvalContext, stage_seconds: dict[str, float]) -> dict:
    """Every evaluator's metrics as the record stores them, each evaluator timed as its own stage."""
    metrics = {}
    for evaluator in evaluators:
        with StageTimer(stage_seconds, f"eval_{evaluator.name}", eval_ctx.device):
            for metric in evaluator.evaluate(eval_ctx):
                if metric.name in metrics:
                    raise ValueError(f"evaluators '{metrics[metric.name]['evaluator']}' and '{evaluator.name}' both "
                                     f"report a metric named '{metric.name}'")
                metrics[metric.name] = {"value": metric.value, "higher_is_better": metric.higher_is_better,
                                        "reference": metric.reference, "evaluator": evaluator.name, **metric.extra}
    return metrics


def _samples_per_class(settings: Any) -> int:
    value = getattr(settings, "samples_per_class", None)
    if not isinstance(value, int) or value < 1:
        raise TypeError("a generator method's settings need an int samples_per_class >= 1")
    return value


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(dpbench.__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _env(device: torch.device) -> dict:
    from importlib.metadata import version

    def v(name: str) -> str | None:
        try:
            return version(name)
        except Exception:
            return None

    return {
        "dpbench": dpbench.__version__, "api_version": API_VERSION, "torch": torch.__version__, "opacus": v("opacus"),
        "torch-fidelity": v("torch-fidelity"), "python": platform.python_version(), "git_commit": _git_commit(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
    }


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _plain_info(info: dict) -> dict:
    """The pair's provenance fields that belong in a JSON record (callables such as streams are left out)."""
    plain = (str, int, float, bool, type(None), list, tuple, dict)
    return {k: v for k, v in info.items() if k != "warnings" and isinstance(v, plain)}


def _check_result(method: Method, result: MethodResult) -> None:
    if not isinstance(result, MethodResult):
        raise TypeError(f"method {method.name} returned {type(result).__name__}, expected MethodResult")
    expected = Generator if method.produces == "generator" else Classifier
    if not isinstance(result.artifact, expected):
        raise TypeError(f"method {method.name} declares it produces a {method.produces}, but its artifact is not one")


def _check_samples(samples: torch.Tensor, labels: torch.Tensor, pair) -> None:
    shape = (len(labels), pair.channels, pair.image_size, pair.image_size)
    if samples.dtype != torch.uint8 or tuple(samples.shape) != shape:
        raise ValueError(f"generator returned {samples.dtype} {tuple(samples.shape)}, expected uint8 {shape}")
