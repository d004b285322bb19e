"""After training: check the method's result, draw the synthetic set, and run the evaluators."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from dpbench.api.context import EvalContext, StageTimer
from dpbench.api.types import Classifier, Generator, Method, MethodResult


def check_result(method: Method, result: MethodResult) -> None:
    if not isinstance(result, MethodResult):
        raise TypeError(f"method {method.name} returned {type(result).__name__}, expected MethodResult")
    expected = Generator if method.produces == "generator" else Classifier
    if not isinstance(result.artifact, expected):
        raise TypeError(f"method {method.name} declares it produces a {method.produces}, but its artifact is not one")


def samples_per_class(settings: Any) -> int:
    value = getattr(settings, "samples_per_class", None)
    if not isinstance(value, int) or value < 1:
        raise TypeError("a generator method's settings need an int samples_per_class >= 1")
    return value


def draw_samples(generator: Generator, settings: Any, pair, seed: int, progress) -> tuple[torch.Tensor, torch.Tensor]:
    """samples_per_class images of every class, checked to be uint8 of the pair's shape."""
    labels = torch.arange(pair.num_classes).repeat_interleave(samples_per_class(settings))
    samples = generator.sample(labels, seed=seed, progress=progress).cpu()
    shape = (len(labels), pair.channels, pair.image_size, pair.image_size)
    if samples.dtype != torch.uint8 or tuple(samples.shape) != shape:
        raise ValueError(f"generator returned {samples.dtype} {tuple(samples.shape)}, expected uint8 {shape}")
    return samples, labels


def reads_private_train(evaluator) -> bool:
    return bool(getattr(evaluator, "needs_private_train", False))


@dataclass
class Scores:
    """Every evaluator's metrics as the record stores them: `metrics` from evaluators that never see the private
    train split, `outside_guarantee` from those that declare they need it (ε does not cover those figures)."""

    metrics: dict = field(default_factory=dict)
    outside_guarantee: dict = field(default_factory=dict)


def evaluate_all(evaluators, eval_ctx: EvalContext, stage_seconds: dict[str, float]) -> Scores:
    """Run every evaluator on the same samples, each timed as its own stage. Only an evaluator that declares
    `needs_private_train` is handed `eval_ctx.private_train`; the others get a context without it."""
    scores, seen = Scores(), {}
    without_train = replace(eval_ctx, private_train=None)
    for evaluator in evaluators:
        outside = reads_private_train(evaluator)
        with StageTimer(stage_seconds, f"eval_{evaluator.name}", eval_ctx.device):
            metrics = evaluator.evaluate(eval_ctx if outside else without_train)
        for metric in metrics:
            if metric.name in seen:
                raise ValueError(f"evaluators '{seen[metric.name]}' and '{evaluator.name}' both report a metric "
                                 f"named '{metric.name}'")
            seen[metric.name] = evaluator.name
            entry = {"value": metric.value, "higher_is_better": metric.higher_is_better,
                     "reference": metric.reference, "evaluator": evaluator.name, **metric.extra}
            (scores.outside_guarantee if outside else scores.metrics)[metric.name] = entry
    return scores


def add_scores(record: dict, scores: Scores) -> None:
    """Put the scores in the record (replacing earlier entries of the same names) and say which outputs are
    withheld: a metric whose entry carries `withhold_grid` (the copy check's, when flagged) withholds the sample
    grid from the leaderboard, with its reason."""
    record["metrics"].update(scores.metrics)
    outside = record.setdefault("outside_guarantee", {}).setdefault("metrics", {})
    outside.update(scores.outside_guarantee)
    reasons = [entry["withhold_grid"] for entries in (record["metrics"], outside) for entry in entries.values()
               if entry.get("withhold_grid")]
    if reasons:
        record["withheld"] = {"grid": "; ".join(reasons)}
    else:
        record.pop("withheld", None)
