"""After training: check the method's result, draw the synthetic set, and run the evaluators."""
from __future__ import annotations

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
