"""The interface types a plugin sees: methods, artifacts, evaluators, scopes, backbones, published results.

A third party subclasses `Method`, `Evaluator`, `Scope` or `BackboneBuilder`, registers an instance from a hook,
and never needs to touch dpbench's code.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: a plugin module that subclasses these loads no torch
    import torch
    from torch import nn

from dpbench.data.types import PairSpec

if TYPE_CHECKING:
    from dpbench.api.context import EvalContext, MethodContext
    from dpbench.api.registry import Registry

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
    def log(self, message: str) -> None: ...


class ProgressTask(Protocol):
    def advance(self, n: int = 1, **fields: Any) -> None: ...
    def close(self) -> None: ...


@dataclass
class MethodResult:
    """What a method returns: its artifact and sizes. The privacy ledger is the harness's, not the method's."""

    artifact: Generator | Classifier
    trainable_parameters: int
    total_parameters: int
    notes: dict = field(default_factory=dict)


class Method(abc.ABC):
    """A DP fine-tuning method. Subclass it, set the class attributes, implement `settings` and `train`.

    `Settings` is a dataclass whose fields use `dpbench.setting(...)`; `settings(preset, pair)` returns the
    preset's values. `train` gets its DP training from `ctx.private_trainer(...)` only.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    produces: ClassVar[str] = "generator"  # "generator" or "classifier"
    reference: ClassVar[str] = ""  # the paper the method and its defaults come from
    # False only for references that never touch private data (the public-only model): they run at ε = 0
    # and their context holds no private data at all.
    trains_on_private: ClassVar[bool] = True
    Settings: ClassVar[type] = type(None)

    @abc.abstractmethod
    def settings(self, preset: str, pair: PairSpec) -> Any:
        """The method's settings (an instance of `Settings`) for a preset on a pair."""

    def complete_settings(self, settings: Any, registry: "Registry") -> Any:
        """The settings after `--set KEY=VALUE` and before `--set PREFIX.KEY=VALUE`: fill nested settings that
        depend on a chosen plugin (a diffusion method's `scope_settings` are its scope's). Identity by default."""
        return settings

    def validate(self, settings: Any, registry: "Registry") -> None:
        """Raise ValueError naming the bad setting (e.g. an unknown scope); called before anything runs."""

    @abc.abstractmethod
    def train(self, ctx: "MethodContext", settings: Any) -> MethodResult:
        """Fine-tune under the run's (ε, δ) through `ctx.private_trainer` and return the artifact."""


@dataclass
class Metric:
    name: str
    value: float
    higher_is_better: bool
    reference: bool = False  # a reference figure (e.g. public-only accuracy), not a score of the method
    extra: dict = field(default_factory=dict)


class Evaluator(abc.ABC):
    """Scores an artifact. `applies_to` lists the artifact kinds it can score. Only an evaluator that declares
    `needs_private_train = True` gets the private train split (`ctx.private_train`); every metric it reports is
    recorded under the record's `outside_guarantee`, since ε does not cover it."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    applies_to: ClassVar[tuple[str, ...]] = ("generator",)
    needs_private_train: ClassVar[bool] = False

    def settings(self, preset: str) -> dict:
        """What the evaluator's result depends on besides the artifact (part of the record's config hash)."""
        return {}

    @abc.abstractmethod
    def evaluate(self, ctx: "EvalContext") -> list[Metric]: ...


class Scope(abc.ABC):
    """A trainable scope: which parameters of a pre-trained U-Net DP fine-tuning may change.

    A scope describes itself to the DP engine, which knows no scope by name:
    - `Settings`: its own settings dataclass (fields made with `dpbench.setting`), or None when it has no knobs.
      Users set them as `--set scope.KEY=VALUE`; a method's preset may give other values.
    - `per_example`: the per-example gradient implementation it declares ("ghost", "hooks" or "vmap"), or "auto"
      to let the engine pick the fastest one whose `supports()` check passes for the model and loss (ghost, else
      vmap). A declared implementation that the check refuses is an error, never a silent fallback.
    - `chunking`: what one chunk of a DP step holds at noise multiplicity K > 1: "rows" (physical_batch_size // K
      examples, memory flat in K) or "examples" (physical_batch_size examples with all K draws each).

    `apply(model, settings)` freezes what must not change and may add adapter modules; `settings` is an instance
    of `Settings` (None when the scope has none).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    Settings: ClassVar[type | None] = None
    per_example: ClassVar[str] = "auto"
    chunking: ClassVar[str] = "rows"

    def validate(self, settings: Any) -> None:
        """Raise ValueError for settings values the scope cannot use (beyond their declared constraints)."""

    @abc.abstractmethod
    def apply(self, model: nn.Module, settings: Any) -> None: ...


class Codec(Protocol):
    """A frozen public-trained autoencoder: uint8 images <-> latents."""

    def encode(self, images: torch.Tensor) -> torch.Tensor: ...
    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Backbone:
    """A public-pretrained noise predictor, and the codec when it works on latents (None for pixels)."""

    unet: nn.Module
    codec: Codec | None
    sample_shape: tuple[int, int, int]


class BackboneBuilder(abc.ABC):
    """Builds a public-pretrained backbone for a run. It is given the public split only (through the context)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # Bump when what `build` trains changes (code, data handling, settings). From 2 on it is part of every run's
    # config hash, so records, sweeps and resumes never mix two recipes of one backbone.
    recipe_version: ClassVar[int | None] = None

    @abc.abstractmethod
    def build(self, ctx: "MethodContext") -> Backbone: ...

    def export(self, ctx: "MethodContext", directory: Path) -> tuple[Path, ...]:
        """Write the backbone's weights and recipe for shipping (`dpbench pretrain`); optional."""
        raise NotImplementedError(f"backbone '{self.name}' does not export shipped weights")


@dataclass(frozen=True)
class PublishedResult:
    """A number from a paper, shown on the leaderboard as a marked reference row (never as a dpbench run)."""

    name: str
    method: str
    private_dataset: str
    epsilon: float
    delta: float
    metrics: dict
    source: str
    setting: str
    pairs: tuple[str, ...] = ()


Register = Callable[[Any], None]
