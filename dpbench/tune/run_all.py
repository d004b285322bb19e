"""`dpbench tune`: the protocol for every asked-for method at every asked-for ε, one summary file per ε."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dpbench.api.registry import Registry
from dpbench.run.runner import validate_budget
from dpbench.storage import default_cache_dir
from dpbench.tune.protocol import tune_method
from dpbench.tune.proxy import ProxySplit
from dpbench.tune.report import trials_table, tune_path, write_tuning


@dataclass
class TuneAll:
    """What `dpbench tune` asked for. `methods` empty: every method that trains on private data."""

    pair: str
    methods: list[str]
    epsilons: list[float]
    delta: float = 1e-5
    preset: str = "default"
    seed: int = 0
    out: Path = Path("runs/tune")
    cache_dir: Path = field(default_factory=default_cache_dir)
    device: str = "auto"
    data_root: str | None = None
    classifier_fits: int = 1
    split: ProxySplit = field(default_factory=ProxySplit)


def method_names(registry: Registry, request: TuneAll) -> list[str]:
    """The methods to tune; unknown names and bad budgets raise (UnknownNameError, RunInputError) before any
    trial runs."""
    registry.pair(request.pair)
    names = list(request.methods) or [m.name for m in registry.methods.values() if m.trains_on_private]
    for name in names:
        registry.method(name)
    for epsilon in request.epsilons:
        validate_budget(epsilon, request.delta)
    return names


def tune_all(registry: Registry, request: TuneAll, make_progress: Callable[[], Any],
             show: Callable[[Any], None]) -> tuple[list[dict], list[str]]:
    """Tune every method at every ε: `show` gets each method's trial table and each written file's path.
    Returns the written summaries and a line per method whose every trial failed."""
    names = method_names(registry, request)
    documents, failed = [], []
    for epsilon in request.epsilons:
        results = []
        for name in names:
            with make_progress() as progress:
                result = tune_method(registry, method=name, pair=request.pair, epsilon=epsilon, delta=request.delta,
                                     out=request.out, cache_dir=request.cache_dir, device=request.device,
                                     data_root=request.data_root, progress=progress, preset=request.preset,
                                     seed=request.seed, split=request.split, classifier_fits=request.classifier_fits)
            show(trials_table(result))
            if any(t.score is not None for t in result.trials):
                results.append(result)
            else:
                failed.append(f"{name} at ε = {epsilon:g}: every trial failed ({result.trials[0].error})")
        path = tune_path(request.out, request.pair, request.preset, epsilon)
        documents.append(write_tuning(path, pair=request.pair, preset=request.preset, epsilon=epsilon,
                                      delta=request.delta, seed=request.seed, split=request.split, results=results,
                                      classifier_fits=request.classifier_fits))
        show(f"wrote {path}")
    return documents, failed
