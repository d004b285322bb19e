"""One run, stage by stage: resolve, load, fine-tune under DP (the method), check the ledger, sample,
evaluate, write the record. The runner knows no method by name."""
from __future__ import annotations

import datetime as dt
import math
import platform
import subprocess
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

import dpbench
from dpbench.data.types import PairData
from dpbench.eval.cost import cost_section, reset_peak_memory
from dpbench.interface import PRESETS, Classifier, EvalContext, Generator, MethodResult, RunContext
from dpbench.plugins import Registry
from dpbench.privacy.accountant import verify_ledger
from dpbench.sampling import samples_per_class
from dpbench.results import SAMPLES_NAME, SCHEMA_VERSION, run_dir, write_record
from dpbench.samples import save_sample_grid



class RunInputError(ValueError):
    """Bad user input, found before anything is written (CLI exit 2)."""


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
    overrides: dict = field(default_factory=dict)


@dataclass
class RunOutcome:
    record: dict
    record_path: Path
    ok: bool


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RunInputError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(name)


def validate_budget(epsilon: float, delta: float, method=None) -> None:
    if method is not None and not method.trains_on_private:
        if epsilon != 0:
            raise RunInputError(f"method '{method.name}' never touches private data; run it with --eps 0, got {epsilon}")
    elif math.isnan(epsilon) or epsilon <= 0:
        raise RunInputError(f"epsilon must be > 0 (or inf for a non-private run), got {epsilon}")
    if not 0 < delta < 1:
        raise RunInputError(f"delta must be in (0, 1), got {delta}")


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
        "dpbench": dpbench.__version__, "torch": torch.__version__, "opacus": v("opacus"),
        "torch-fidelity": v("torch-fidelity"), "python": platform.python_version(), "git_commit": _git_commit(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
    }


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def resolve(registry: Registry, request: RunRequest):
    """Look everything up and check the inputs; raises before anything is written."""
    method = registry.method(request.method)
    pair = registry.pair(request.pair)
    if request.preset not in PRESETS:
        raise RunInputError(f"unknown preset '{request.preset}', expected one of {PRESETS}")
    validate_budget(request.epsilon, request.delta, method)
    evaluator_names = request.evaluators if request.evaluators is not None else list(registry.evaluators)
    evaluators = [registry.evaluator(name) for name in evaluator_names]
    evaluators = [e for e in evaluators if method.produces in e.applies_to]
    config = method.configure(request.preset, pair)
    unknown = sorted(set(request.overrides) - set(config))
    if unknown:
        raise RunInputError(f"unknown setting(s) {unknown} for method '{method.name}'; valid: {sorted(config)}")
    config = {**config, **request.overrides}
    try:
        method.validate(config)
    except (ValueError, TypeError) as exc:
        raise RunInputError(f"bad setting for method '{method.name}': {exc}") from exc
    return method, pair, evaluators, config


def execute(registry: Registry, request: RunRequest, progress, data: PairData | None = None) -> RunOutcome:
    """Run one benchmark cell. Input errors raise RunInputError/UnknownNameError before anything is written;
    a failure after that writes a record with status "failed" and the reason."""
    method, pair, evaluators, config = resolve(registry, request)
    device = resolve_device(request.device)
    if data is None:
        data = pair.load(request.data_root)  # DataMissingError propagates: nothing written yet

    directory = run_dir(request.out, pair.name, method.name, request.epsilon, request.seed)
    origin = registry.origin.get(f"method:{method.name}")
    warnings = list(data.info.get("warnings", []))
    n_private = len(data.private_train)
    if request.delta >= 1 / n_private:
        warnings.append(f"delta={request.delta:g} >= 1/n_private={1 / n_private:.3g}: this delta permits leaking a whole record")
        progress.log(f"[yellow]warning:[/] {warnings[-1]}")
    record = {
        "schema_version": SCHEMA_VERSION, "status": "running",
        "method": {"name": method.name, "produces": method.produces, "reference": method.reference, "config": config,
                   "plugin": {"name": origin.name if origin else None, "distribution": origin.distribution if origin else None,
                              "version": origin.version if origin else None}},
        "pair": {"name": pair.name, "n_public": len(data.public_train), "n_private_train": n_private,
                 "n_private_test": len(data.private_test), "info": _plain_info(data.info)},
        "seed": request.seed, "preset": request.preset, "warnings": warnings,
        "privacy": {"epsilon_target": request.epsilon, "delta": request.delta},
        "metrics": {}, "cost": {}, "env": _env(device), "started_at": _now(), "finished_at": None,
    }
    ctx = RunContext(pair=pair, data=data, epsilon=request.epsilon, delta=request.delta, seed=request.seed,
                     device=device, preset=request.preset, progress=progress, cache_dir=Path(request.cache_dir))
    reset_peak_memory(device)
    try:
        torch.manual_seed(request.seed)
        result = method.train(ctx, config)
        _check_result(method, result)
        epsilon = verify_ledger(result.ledger, request.epsilon, request.delta)
        record["privacy"] = {"epsilon_target": request.epsilon, "epsilon": epsilon, "private": result.ledger.is_private,
                             **{k: v for k, v in result.ledger.to_dict().items() if k != "epsilon_target"}}
        samples, labels = None, None
        if method.produces == "generator":
            per_class = int(config.get("samples_per_class") or samples_per_class(request.preset, pair))
            labels = torch.arange(pair.num_classes).repeat_interleave(per_class)
            with ctx.stage("sample"):
                samples = result.artifact.sample(labels, seed=request.seed, progress=progress).cpu()
            _check_samples(samples, labels, pair)
        eval_ctx = EvalContext(pair=pair, data=data, artifact=result.artifact, produces=method.produces,
                               samples=samples, sample_labels=labels, seed=request.seed, device=device,
                               preset=request.preset, progress=progress, cache_dir=Path(request.cache_dir))
        for evaluator in evaluators:
            with ctx.stage(f"eval_{evaluator.name}"):
                for metric in evaluator.evaluate(eval_ctx):
                    record["metrics"][metric.name] = {"value": metric.value, "higher_is_better": metric.higher_is_better,
                                                      "reference": metric.reference, "evaluator": evaluator.name, **metric.extra}
        record["cost"] = cost_section(ctx.stage_seconds, device, result.trainable_parameters, result.total_parameters)
        record["method"]["notes"] = result.notes
        if samples is not None:
            save_sample_grid(samples, labels, pair.num_classes, directory / SAMPLES_NAME)
        record["status"] = "completed"
    except Exception as exc:
        record["status"] = "failed"
        record["error"] = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc(limit=8)}
        record["cost"] = record["cost"] or {"wall_seconds": dict(ctx.stage_seconds)}
    record["finished_at"] = _now()
    path = write_record(directory, record)
    return RunOutcome(record=record, record_path=path, ok=record["status"] == "completed")


def _plain_info(info: dict) -> dict:
    """The pair's provenance fields that belong in a JSON record (callables such as streams are left out)."""
    plain = (str, int, float, bool, type(None), list, tuple, dict)
    return {k: v for k, v in info.items() if k != "warnings" and isinstance(v, plain)}


def _check_result(method, result: MethodResult) -> None:
    if not isinstance(result, MethodResult):
        raise TypeError(f"method {method.name} returned {type(result).__name__}, expected MethodResult")
    expected = Generator if method.produces == "generator" else Classifier
    if not isinstance(result.artifact, expected):
        raise TypeError(f"method {method.name} declares it produces a {method.produces}, but its artifact is not one")


def _check_samples(samples: torch.Tensor, labels: torch.Tensor, pair) -> None:
    shape = (len(labels), pair.channels, pair.image_size, pair.image_size)
    if samples.dtype != torch.uint8 or tuple(samples.shape) != shape:
        raise ValueError(f"generator returned {samples.dtype} {tuple(samples.shape)}, expected uint8 {shape}")
