"""What a method and an evaluator see of a run. Only the evaluators' context holds the private test split."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from dpbench.api.registry import pair_view
from dpbench.api.types import Backbone, Classifier, Generator, Progress, Scope
from dpbench.data.types import ImageSet, PairSpec
from dpbench.privacy.distributed import SINGLE, World

if TYPE_CHECKING:
    from dpbench.api.registry import Registry
    from dpbench.privacy.books import PrivacyBooks
    from dpbench.privacy.engine import DPSettings, MakeBatch, PerExampleLoss, PrivateTrainer


_WITHHELD = {
    "data": "methods get ctx.public, ctx.private (a handle) and ctx.private_trainer(...), not the pair's splits",
    "private_test": "the private test split is scored on, so only evaluators see it",
    "private_train": "private examples are reached only through an engine from ctx.private_trainer(...)",
}


@dataclass(frozen=True)
class PrivateSplit:
    """A handle to the private training split: its size and shape. Its examples are reached only through an
    engine from `MethodContext.private_trainer`."""

    size: int
    image_shape: tuple[int, int, int]
    num_classes: int

    def __len__(self) -> int:
        return self.size


class MethodContext:
    """What a method gets for one run: the public split, the pair's public info, a handle to the private split,
    and the harness's DP engines, backbones and scopes."""

    def __init__(self, *, pair: PairSpec, public: ImageSet, public_info: dict, private: PrivateSplit | None,
                 books: "PrivacyBooks | None", registry: "Registry", epsilon: float, delta: float, seed: int,
                 device: torch.device, preset: str, progress: Progress, cache_dir: Path,
                 rebuild_backbone: bool = False, world: World = SINGLE, max_steps: int | None = None,
                 cell_seed: int | None = None) -> None:
        self.public, self.public_info, self.private = public, public_info, private
        # seed: the run seed the user gave; cell_seed: seed material of this (seed, ε, config) cell alone, for the
        # method's own random streams, so that no two cells of a grid share them
        self.cell_seed = seed if cell_seed is None else cell_seed
        self.max_steps = max_steps  # the run's --max-steps: backbones train at most this many steps per phase
        self.epsilon, self.delta, self.seed, self.device = epsilon, delta, seed, device
        self.preset, self.progress, self.cache_dir = preset, progress, Path(cache_dir)
        self.rebuild_backbone = rebuild_backbone  # ignore shipped backbones and train them locally
        self.world = world  # the data-parallel processes this run trains on (one in a plain run)
        self.stage_seconds: dict[str, float] = {}
        self.__books = books
        self.__registry = registry.for_plugins()  # its pairs, like ctx.pair, have no loader
        self.__pair = pair_view(pair)

    @property
    def pair(self) -> PairSpec:
        """The pair's description (name, image size, channels, classes) without its loader: a method reaches the
        private split only through `private_trainer`."""
        return self.__pair

    def __getattr__(self, name: str) -> Any:
        if name in _WITHHELD:
            raise PermissionError(f"a method's context has no '{name}': {_WITHHELD[name]}")
        raise AttributeError(f"'MethodContext' object has no attribute '{name}'")

    def private_trainer(self, model: nn.Module, loss: "PerExampleLoss", make_batch: "MakeBatch",
                        settings: "DPSettings", *, prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
                        budget_share: float = 1.0) -> "PrivateTrainer":
        """A DP-SGD engine over the private training split, at this run's (ε, δ) or a share of it.

        `prepare` is a fixed per-example map applied once to the private uint8 images (e.g. a public encoder);
        `make_batch(examples, generator)` turns the step's examples into the loss's inputs. A method with
        several DP stages passes a `budget_share` per stage; the shares must add up to at most 1.
        """
        if self.__books is None:
            raise PermissionError("this run holds no private data (the method declares trains_on_private = False "
                                  "or runs at ε = 0), so it cannot train on it")
        return self.__books.open(model, loss, make_batch, settings, prepare=prepare, budget_share=budget_share,
                                 num_classes=self.private.num_classes if self.private is not None else None)

    def backbone(self, name: str) -> Backbone:
        """The registered backbone `name`, pre-trained on the public split (cached). With several processes, rank 0
        pre-trains and caches it first; the others then read the cache."""
        with self.world.leader_first():
            return self.__registry.backbone(name).build(self)

    def scope(self, name: str) -> Scope:
        return self.__registry.scope(name)

    def stage(self, name: str) -> "StageTimer":
        """Time a named stage (e.g. "pretrain", "finetune"); the record's cost section reports it."""
        return StageTimer(self.stage_seconds, name, self.device)


class StageTimer:
    def __init__(self, sink: dict[str, float], name: str, device: torch.device) -> None:
        self.sink, self.name, self.device = sink, name, device

    def __enter__(self) -> "StageTimer":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.sink[self.name] = self.sink.get(self.name, 0.0) + time.perf_counter() - self.start


@dataclass
class EvalContext:
    """What an evaluator sees: the pair, the public split, the private test split, the artifact, and for
    generators the samples drawn once. `private_train` is set only for an evaluator that declares
    `needs_private_train = True` (the scoring stage hands every other one a copy without it)."""

    pair: PairSpec
    public_train: ImageSet
    private_test: ImageSet
    artifact: Generator | Classifier | None
    produces: str
    samples: torch.Tensor | None  # uint8 (N, C, H, W), generators only
    sample_labels: torch.Tensor | None
    seed: int
    device: torch.device
    preset: str
    progress: Progress
    cache_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)
    # only for evaluators that declare needs_private_train (the real-data ceiling, the copy check); their metrics are
    # recorded outside the guarantee, and an evaluator never puts private images in an output
    private_train: ImageSet | None = None
    # a --max-samples trial's cap: an evaluator builds no reference set larger than this (None: no cap)
    max_samples: int | None = None

    def __post_init__(self) -> None:
        if self.pair is not None:  # an evaluator gets its splits from the harness, never from a loader
            self.pair = pair_view(self.pair)
