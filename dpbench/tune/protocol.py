"""`dpbench tune`: choose a method's hyperparameters on the public proxy task, with the same trial budget for
every method.

Each trial is an ordinary run (`dpbench.run.runner.execute`) on the proxy pair data from `proxy.py`, at the
target ε, with the sample rate of the real private split (the batch size is scaled to the proxy's size, steps
are kept, so σ is the real run's). It is scored by the `accuracy` evaluator against the proxy test split.

The search is a coordinate search of `TRIAL_BUDGET` trials per method, starting from the method's preset:
1. clip norm C × {1, 1/10, 1/100}. C sets the noise σ·C against the size of the per-example gradients, and those
   differ by orders of magnitude between losses and scopes (a pixel-mean diffusion loss on LoDA adapters gives
   per-example norms near 0.02, so at C = 1 nothing is clipped and the noise swamps the signal);
2. at the best, learning rate × {1/4, 4};
3. at the best, the schedule at equal compute: (2× steps, ½× batch) and (½× steps, 2× batch);
4. at the best, classifier-free guidance × {½, 2} for a generator; learning rate × {½, 2} for a method
   without guidance (the same number of trials).
Steps × batch never grows, so a chosen setting costs what the preset costs: the default run's time budget holds.

With `classifier_fits` N > 1, a generator's trial is scored by the mean accuracy of N classifier fits on its own
synthetic set (the evaluator's, then seeds seed + 1000·i), since one fit moves a proxy trial by several points; a
method without a synthetic set (a DP classifier) keeps its one accuracy. The committed presets were tuned with 5.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dpbench.api.registry import Registry
from dpbench.api.settings import as_dict
from dpbench.data.types import ImageSet
from dpbench.eval.downstream import train_and_test
from dpbench.run.environment import resolve_device
from dpbench.run.resolve import resolve
from dpbench.run.runner import RunRequest, execute
from dpbench.run.synthetic import load_synthetic
from dpbench.tune.proxy import ProxySplit, proxy_pair_data, scaled_batch_size

TRIAL_BUDGET = 9
SCORE_METRIC = "accuracy"
TRIAL_SAMPLES_PER_CLASS = 50  # synthetic images per class in a trial (the proxy test split has ~36 per class)
CLIP_FACTORS = (0.1, 0.01)  # around the preset's clip norm (the preset itself is the first trial)
LR_FACTORS = (0.25, 4.0)
LR_REFINE = (0.5, 2.0)
GUIDANCE_FACTORS = (0.5, 2.0)
EXTRA_FIT_SEED_STRIDE = 1000  # extra classifier fits use seeds seed + 1000·i, away from the run seeds


@dataclass
class Trial:
    overrides: dict[str, Any]  # in the real run's terms (batch size at the real private split's size)
    proxy_batch_size: int | None = None
    score: float | None = None
    status: str = "pending"
    error: str | None = None
    seconds: float = 0.0
    record: str | None = None
    fits: list[float] | None = None  # each classifier fit's accuracy when the score is their mean

    def value(self) -> float:
        return self.score if self.score is not None else -math.inf


@dataclass
class TuneResult:
    method: str
    epsilon: float
    base: dict[str, Any]
    trials: list[Trial] = field(default_factory=list)

    def best(self) -> Trial:
        done = [t for t in self.trials if t.score is not None]
        if not done:
            raise RuntimeError(f"every tuning trial of '{self.method}' failed: {self.trials[0].error}")
        return max(done, key=lambda t: t.value())  # max keeps the earliest of equal scores

    def to_dict(self) -> dict:
        best = self.best()
        return {"method": self.method, "epsilon": self.epsilon, "preset_settings": self.base,
                "chosen": best.overrides, "chosen_score": best.score,
                "trials": [dataclasses.asdict(t) for t in self.trials]}


def _neighbours(base: dict, best: dict, phase: int) -> list[dict]:
    """The phase's candidate overrides around the current best (in real-run terms)."""
    current = {**base, **best}
    if phase == 1:
        clip = base.get("max_grad_norm")
        return [{}] + ([{"max_grad_norm": clip * f} for f in CLIP_FACTORS] if clip else [])
    if phase == 2:
        return [{**best, "lr": current["lr"] * f} for f in LR_FACTORS]
    if phase == 3:
        if "steps" not in base or "batch_size" not in base:
            return []
        steps, batch = current["steps"], current["batch_size"]
        options = [(steps * 2, batch // 2), (max(1, steps // 2), batch * 2)]
        return [{**best, "steps": s, "batch_size": b} for s, b in options if b >= 2]
    if "guidance_scale" in base:
        return [{**best, "guidance_scale": current["guidance_scale"] * f} for f in GUIDANCE_FACTORS]
    return [{**best, "lr": current["lr"] * f} for f in LR_REFINE]


def tune_method(registry: Registry, *, method: str, pair: str, epsilon: float, delta: float, out: Path,
                cache_dir: Path, device: str, data_root: str | None, progress, preset: str = "default",
                seed: int = 0, split: ProxySplit = ProxySplit(), classifier_fits: int = 1,
                on_trial: Callable[[Trial], None] | None = None) -> TuneResult:
    """Run the protocol for one method at one ε; returns every trial and the chosen overrides."""
    spec = registry.pair(pair)
    data = spec.load(data_root)
    n_private = len(data.private_train)  # the real split's size only: it sets the sample rate to match
    proxy = proxy_pair_data(data.public_train, split, data.info)
    del data
    base_request = RunRequest(method=method, pair=pair, epsilon=epsilon, delta=delta, seed=seed, preset=preset,
                              out=Path(out) / "trials", device=device, cache_dir=Path(cache_dir),
                              evaluators=[SCORE_METRIC], rebuild_backbone=True)
    base = as_dict(resolve(registry, base_request).settings)
    result = TuneResult(method=method, epsilon=epsilon, base=base)
    best: dict = {}
    for phase in (1, 2, 3, 4):
        for overrides in _neighbours(base, best, phase):
            if len(result.trials) >= TRIAL_BUDGET:
                break
            trial = Trial(overrides=overrides)
            result.trials.append(trial)
            run_trial(registry, base_request, base, trial, proxy, n_private, progress, classifier_fits)
            if on_trial is not None:
                on_trial(trial)
        best = result.best().overrides
    return result


def run_trial(registry, base_request: RunRequest, base: dict, trial: Trial, proxy, n_private: int, progress,
              classifier_fits: int = 1) -> None:
    """Run one trial on the proxy data at the real split's sample rate; fills in its score, status and record."""
    run_overrides = dict(trial.overrides)
    if "batch_size" in base:
        trial.proxy_batch_size = scaled_batch_size(run_overrides.get("batch_size", base["batch_size"]),
                                                   len(proxy.private_train), n_private)
        run_overrides["batch_size"] = trial.proxy_batch_size
    if "samples_per_class" in base:
        run_overrides["samples_per_class"] = TRIAL_SAMPLES_PER_CLASS
    request = dataclasses.replace(base_request, overrides=run_overrides)
    started = time.perf_counter()
    try:
        outcome = execute(registry, request, progress, data=proxy)
    except Exception as exc:  # a bad candidate (e.g. an unreachable budget) is a failed trial, not a failed tune
        trial.status, trial.error = "failed", f"{type(exc).__name__}: {exc}"
    else:
        trial.record = Path(outcome.record_path).relative_to(base_request.out.parent).as_posix()
        trial.status = outcome.record["status"]
        if outcome.ok:
            trial.score = outcome.record["metrics"][SCORE_METRIC]["value"]
            if classifier_fits > 1 and "synthetic" in outcome.record:
                trial.fits = [trial.score] + _extra_fits(registry, outcome, proxy, base_request, classifier_fits)
                trial.score = statistics.fmean(trial.fits)
        else:
            trial.error = outcome.record.get("error", {}).get("message")
    trial.seconds = round(time.perf_counter() - started, 1)


def _extra_fits(registry, outcome, proxy, request: RunRequest, fits: int) -> list[float]:
    """`fits - 1` more classifier fits on the trial's own synthetic set, each tested on the proxy-test part."""
    record = outcome.record
    train = ImageSet(*load_synthetic(Path(outcome.record_path).parent, record["synthetic"]))
    pair = registry.pair(record["pair"]["name"])
    return [train_and_test(pair, train, proxy.private_test, preset=record["preset"],
                           seed=request.seed + EXTRA_FIT_SEED_STRIDE * i, device=resolve_device(request.device))
            for i in range(1, fits)]
