"""Exact resume of DP training: what a checkpoint holds, where it lives, and when it may be used.

A checkpoint of one DP stage holds the trainable parameters, the optimizer state, the steps taken, the batch
sizes drawn, the non-finite count and every random state the stage draws from (noise, sampling, the method's
batch generator, torch's global generator). Under the `seeded` and `os-seeded` rngs, resuming restores all of
them, so the remaining steps are the ones an uninterrupted run would take, bit for bit: a step recomputed after a
kill draws the same noise and the same batch as the lost one, so even if something of the lost step got out (a
plugin's log), the recomputed step releases nothing new.

The `secure` rng draws from os.urandom and has no state to restore: a step recomputed after a kill would draw
*fresh* noise and a fresh batch, a second release of that step. So a secure stage keeps a write-ahead counter
of the steps it started (`dp-stage<N>.started`, written and fsynced before each step samples its batch and draws
its noise), and a resumed secure stage charges every step started after its checkpoint to the ledger as taken:
it continues at the counter, from the checkpoint's parameters, and takes only the planned steps left after it.
The run's ε stays within the target; the lost steps' updates are simply missing from the model.

Checkpoints hold generator state, so they are as secret as the noise: written owner-only, deleted when the
run completes. A checkpoint whose identity (config hash, data digest, stage plan) differs from the run's is
refused.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from dpbench.storage import atomic_torch_save, atomic_write_bytes

CHECKPOINT_FORMAT = 1


class CheckpointMismatchError(ValueError):
    """A checkpoint written by another configuration, data or plan than the run resuming from it."""


@dataclass(frozen=True)
class CheckpointPlan:
    """Where a run's DP stages checkpoint, how often, and whether this run resumes from what is there."""

    directory: Path
    every: int
    identity: dict  # config hash and data digest of the run
    resume: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"checkpoint interval must be an int >= 1, got {self.every!r}")

    def path(self, stage: int) -> Path:
        return Path(self.directory) / "checkpoints" / f"dp-stage{stage}.pt"

    def started_path(self, stage: int) -> Path:
        return Path(self.directory) / "checkpoints" / f"dp-stage{stage}.started"

    def existing(self) -> list[Path]:
        folder = Path(self.directory) / "checkpoints"
        return sorted(folder.glob("dp-stage*.pt")) if folder.exists() else []

    def record_started(self, stage: int, steps: int) -> None:
        """Write ahead (atomically, fsynced) that the stage has started `steps` steps."""
        payload = {"format": CHECKPOINT_FORMAT, "identity": self.identity, "stage": stage, "started": steps}
        atomic_write_bytes(self.started_path(stage), json.dumps(payload).encode(), mode=0o600)

    def steps_started(self, stage: int) -> int | None:
        """The write-ahead count of the stage's started steps when resuming, or None; another run's is refused."""
        path = self.started_path(stage)
        if not self.resume or not path.exists():
            return None
        state = json.loads(path.read_text())
        self.check(state, path)
        return int(state["started"])

    def save(self, stage: int, state: dict) -> None:
        atomic_torch_save({"format": CHECKPOINT_FORMAT, "identity": self.identity, "stage": stage, **state},
                          self.path(stage))

    def load(self, stage: int, plan: dict) -> dict | None:
        """The stage's checkpoint when resuming and one exists; refused when it belongs to another run."""
        path = self.path(stage)
        if not self.resume or not path.exists():
            return None
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.check(state, path)
        if state.get("plan") != plan:
            raise CheckpointMismatchError(f"{path} was written for another DP plan ({state.get('plan')}, this run "
                                          f"plans {plan}); start the run again without --resume")
        return state

    def check(self, state: dict, path: Path) -> None:
        if state.get("format") != CHECKPOINT_FORMAT or state.get("identity") != self.identity:
            raise CheckpointMismatchError(
                f"{path} belongs to another run (identity {state.get('identity')}, this run is {self.identity}): "
                "its config or data differ; start the run again without --resume")

    def check_all(self) -> None:
        """Refuse, before anything runs, every checkpoint in the run folder that another run wrote."""
        for path in self.existing():
            self.check(torch.load(path, map_location="cpu", weights_only=True), path)

    def clear(self) -> None:
        folder = Path(self.directory) / "checkpoints"
        for path in [*self.existing(), *(sorted(folder.glob("dp-stage*.started")) if folder.exists() else [])]:
            path.unlink()
        folder = Path(self.directory) / "checkpoints"
        if folder.exists() and not any(folder.iterdir()):
            folder.rmdir()
