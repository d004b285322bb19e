"""The common interface between the harness and its plugins: methods, artifacts, evaluators.

A third party subclasses `Method` (or `Evaluator`), registers an instance from a hook, and never needs
to touch dpbench's code. Everything a method may reuse from the core is reachable from `RunContext`.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import torch

from dpbench.data.types import PairData, PairSpec
from dpbench.privacy.ledger import PrivacyLedger

PRESETS = ("smoke", "default", "paper")


@runtime_checkable
class Generator(Protocol):
    """A class-conditional image generator: labels in, uint8 images (N, C, H, W) out."""

    def sample(self, labels: torch.Tensor, seed: int, progress: "Progress | None" = None) -> torch.Tensor: ...


@runtime_checkable
class Classifier(Protocol):
    """A classifier over uint8 images (N, C, H, W); returns int64 predicted labels."""

    def predict(self, images: torch.Tensor) -> torch.Tensor: ...


class Progress(Protocol):
    """Progress reporting for long work; the CLI renders it, tests pass a silent one."""

    def task(self, description: str, total: int | None) -> "ProgressTask": ...


class ProgressTask(Protocol):
    def advance(self, n: int = 1, **fields: Any) -> None: ...
    def close(self) -> None: ...


@dataclass
class RunContext:
    """What a method gets for one run. `private_train` is the only split it may train on."""

    pair: PairSpec
    data: PairData
    epsilon: float
    delta: float
    seed: int
    device: torch.device
    preset: str
    progress: Progress
    cache_dir: Path
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def stage(self, name: str) -> "StageTimer":
        """Time a named stage (e.g. "pretrain", "finetune"); the record's cost section reports it."""
        return StageTimer(self.stage_seconds, name, self.device)


class StageTimer:
    def __init__(self, sink: dict[str, float], name: str, device: torch.device) -> None:
        self.sink, self.name, self.device = sink, name, device

    def __enter__(self) -> "StageTimer":
        import time

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        import time

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.sink[self.name] = self.sink.get(self.name, 0.0) + time.perf_counter() - self.start


@dataclass
class MethodResult:
    """What a method returns: its artifact, the privacy ledger of its private training, and sizes."""

    artifact: Generator | Classifier
    ledger: PrivacyLedger
    trainable_parameters: int
    total_parameters: int
    notes: dict = field(default_factory=dict)


class Method(abc.ABC):
    """A DP fine-tuning method. Subclass it, set the class attributes, implement `configure` and `train`."""

    name: str = ""
    description: str = ""
    produces: str = "generator"  # "generator" or "classifier"
    reference: str = ""  # the paper the method and its defaults come from
    # False only for references that never touch private data (e.g. the public-only model); they run at ε = 0.
    trains_on_private: bool = True

    @abc.abstractmethod
    def configure(self, preset: str, pair: PairSpec) -> dict:
        """The method's hyperparameters for a preset on a pair (plain JSON-able values)."""

    def validate(self, config: dict) -> None:
        """Raise ValueError naming the bad setting; called before anything runs (bad input, exit 2)."""

    @abc.abstractmethod
    def train(self, ctx: RunContext, config: dict) -> MethodResult:
        """Fine-tune under (ctx.epsilon, ctx.delta)-DP on ctx.data.private_train and return the result."""


@dataclass
class Metric:
    name: str
    value: float
    higher_is_better: bool
    reference: bool = False  # a reference figure (e.g. public-only accuracy), not a score of the method
    extra: dict = field(default_factory=dict)


@dataclass
class EvalContext:
    """What an evaluator sees: the pair, the artifact, and for generators the samples drawn once."""

    pair: PairSpec
    data: PairData
    artifact: Generator | Classifier
    produces: str
    samples: torch.Tensor | None  # uint8 (N, C, H, W), generators only
    sample_labels: torch.Tensor | None
    seed: int
    device: torch.device
    preset: str
    progress: Progress
    cache_dir: Path


class Evaluator(abc.ABC):
    """Scores an artifact. `applies_to` lists the artifact kinds it can score."""

    name: str = ""
    description: str = ""
    applies_to: tuple[str, ...] = ("generator",)

    @abc.abstractmethod
    def evaluate(self, ctx: EvalContext) -> list[Metric]: ...


Register = Callable[[Any], None]
