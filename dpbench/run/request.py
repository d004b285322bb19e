"""What a user asks one run for, what it returns, and the checks on the request alone."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from dpbench.api.types import Method
from dpbench.privacy.audit import AuditSettings
from dpbench.privacy.randomness import RNG_KINDS
from dpbench.storage import default_cache_dir


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
    cache_dir: Path = field(default_factory=default_cache_dir)
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
    # Caps for a trial of a big preset (docs/data.md): never a preset's default; hashed and recorded when set.
    max_steps: int | None = None  # at most this many steps in every DP stage and every pre-training phase
    max_samples: int | None = None  # at most this many synthetic images (the FID/KID and downstream sample count)
    max_batch: int | None = None  # at most this expected batch (so this sample rate) in every DP stage


def run_caps(request: RunRequest) -> dict:
    """The caps the request sets ({} when none): what the config hash and the record carry."""
    caps = {"max_steps": request.max_steps, "max_samples": request.max_samples, "max_batch": request.max_batch}
    return {name: value for name, value in caps.items() if value is not None}


def check_caps(request: RunRequest) -> None:
    for name, value in run_caps(request).items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise RunInputError(f"{name} must be an int >= 1 (or unset), got {value!r}")


@dataclass
class RunOutcome:
    record: dict
    record_path: Path | None  # None on a data-parallel rank other than 0: only rank 0 writes
    ok: bool


def validate_budget(epsilon: float, delta: float, method: Method | None = None) -> None:
    if method is not None and not method.trains_on_private:
        if epsilon != 0:
            raise RunInputError(f"method '{method.name}' never touches private data; run it with --eps 0, got {epsilon}")
    elif math.isnan(epsilon) or epsilon <= 0:
        raise RunInputError(f"epsilon must be > 0 (or inf for a non-private run), got {epsilon}")
    if not 0 < delta < 1:
        raise RunInputError(f"delta must be in (0, 1), got {delta}")


def check_delta(request: RunRequest, method, pair_name: str, n_private: int) -> bool:
    """Whether δ >= 1/n_private for a method that trains on private data; RunInputError unless the request
    allows it (a sweep checks every cell this way before running any)."""
    large_delta = method.trains_on_private and request.delta >= 1 / n_private
    if large_delta and not request.allow_large_delta:
        raise RunInputError(f"delta={request.delta:g} >= 1/n_private={1 / n_private:.3g} for pair '{pair_name}': such a "
                            "delta permits releasing a whole record, so the run would not be private; pass a "
                            "smaller --delta (or --allow-large-delta to run it anyway, marked in the record)")
    return large_delta


def check_request(request: RunRequest, method: Method, world_size: int) -> None:
    """What the request alone can get wrong: rng kind, audit target, process count."""
    if request.rng not in RNG_KINDS:
        raise RunInputError(f"rng must be one of {', '.join(RNG_KINDS)}, got '{request.rng}'")
    if request.audit is not None and not (method.trains_on_private and 0 < request.epsilon < math.inf):
        raise RunInputError(f"an audit needs a method that trains on private data at a finite ε > 0; got "
                            f"'{method.name}' at ε = {request.epsilon:g}")
    if isinstance(request.nproc, bool) or not isinstance(request.nproc, int) or request.nproc < 1:
        raise RunInputError(f"nproc must be an int >= 1, got {request.nproc!r}")
    check_caps(request)
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
