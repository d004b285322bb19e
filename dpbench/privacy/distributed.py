"""Data-parallel DP-SGD over torch.distributed processes (launched by `torchrun`, or `dpbench run --nproc N`).

Why the privacy accounting is unchanged: rank r owns the fixed shard {i : i mod N = r} of the private split and
Poisson-samples it at the run's rate q with a sampling stream of its own. Every example still joins the step's
batch independently with probability q, so the union over ranks is a Poisson sample of the whole split at rate q:
the accountant's q and the ledger are the single-process ones. Each rank clips its examples to C; the clipped sums
are all-reduced, and the Gaussian noise sigma*C is drawn once per step, on rank 0, and broadcast, so every rank
applies the same released gradient. Noise drawn on each rank and then summed would have std sqrt(N)*sigma*C.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.distributed as dist

LEADER = 0
# Followers wait at a barrier while the leader pre-trains a backbone (can take long on a CPU)
BARRIER_TIMEOUT = dt.timedelta(hours=6)


class DivergedReplicasError(RuntimeError):
    """The ranks' trainable parameters differ: they no longer train one model."""


@dataclass(frozen=True)
class World:
    """This process's place among the processes training one run: rank and world size (1, 0 for a plain run)."""

    rank: int = 0
    size: int = 1

    @property
    def is_leader(self) -> bool:
        """Rank 0: the only rank that draws the noise, samples, evaluates and writes the record."""
        return self.rank == LEADER

    @property
    def is_distributed(self) -> bool:
        return self.size > 1

    def shard(self, n: int) -> torch.Tensor:
        """The private indices this rank owns: i with i mod size == rank (all of them in a plain run)."""
        return torch.arange(self.rank, n, self.size)

    def sum(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The sum of each tensor over every rank (one all-reduce of a flat buffer)."""
        if not self.is_distributed:
            return tensors
        flat = torch.cat([t.reshape(-1) for t in tensors.values()])
        _in_place(dist.all_reduce, flat, op=dist.ReduceOp.SUM)
        return _unflatten(flat, tensors)

    def sum_counts(self, *counts: int) -> tuple[int, ...]:
        if not self.is_distributed:
            return counts
        values = torch.tensor(counts, dtype=torch.int64, device=_collective_device())
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return tuple(int(v) for v in values.tolist())

    def drawn_once(self, draw: Callable[[], dict[str, torch.Tensor]],
                   like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`draw()` run on the leader only, its result broadcast to every rank (shaped like `like`)."""
        if not self.is_distributed:
            return draw()
        values = draw() if self.is_leader else {n: torch.empty_like(t) for n, t in like.items()}
        return self.from_leader(values)

    def from_leader(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The leader's values of `tensors`, on every rank."""
        if not self.is_distributed:
            return tensors
        flat = torch.cat([t.reshape(-1) for t in tensors.values()])
        _in_place(dist.broadcast, flat, src=LEADER)
        return _unflatten(flat, tensors)

    def copy_leader_model(self, model: torch.nn.Module) -> None:
        """Overwrite this rank's parameters and buffers with the leader's, so every rank starts from one model."""
        if not self.is_distributed:
            return
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype in (torch.int64, torch.int32):
                    _in_place(dist.broadcast, tensor.data, src=LEADER)

    def check_identical(self, tensors: dict[str, torch.Tensor]) -> None:
        """Raise unless every rank holds bit-identical `tensors` (compared through the leader's broadcast)."""
        if not self.is_distributed:
            return
        leader = self.from_leader({n: t.detach().clone() for n, t in tensors.items()})
        same = torch.tensor([int(all(torch.equal(leader[n], t.detach()) for n, t in tensors.items()))],
                            device=_collective_device())
        dist.all_reduce(same, op=dist.ReduceOp.MIN)
        if not int(same):
            raise DivergedReplicasError("the ranks' trainable parameters differ after DP training")

    @contextlib.contextmanager
    def leader_first(self) -> Iterator[None]:
        """Run the block on the leader first, then on the other ranks (e.g. so that only the leader fills a cache
        and the others read it)."""
        if not self.is_distributed:
            yield
            return
        if not self.is_leader:
            dist.barrier()
        try:
            yield
        finally:
            if self.is_leader:
                dist.barrier()


SINGLE = World()


def launched_world_size() -> int:
    """The world size torchrun set for this process (1 when it was not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def current_world() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return SINGLE


def join_launched_world(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun launched this process into (gloo on CPU, nccl on CUDA, each rank on
    cuda:LOCAL_RANK), or stay single when it was not launched with more than one process. Returns the world and
    the device this rank trains on."""
    if launched_world_size() <= 1:
        return current_world(), device
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"local rank {local_rank} has no GPU: this node has {torch.cuda.device_count()}; launch "
                             "at most that many processes per node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=BARRIER_TIMEOUT)
        atexit.register(dist.destroy_process_group)
    return current_world(), device


def _collective_device() -> torch.device:
    """Where small bookkeeping tensors must live for the process group's backend (nccl needs CUDA)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _in_place(collective, tensor: torch.Tensor, **kwargs) -> None:
    """Run `collective` on `tensor` in place, through a copy on the GPU when the backend is nccl and the tensor is
    not there (e.g. a model the method left on the CPU); gloo takes tensors where they are."""
    device = _collective_device()
    if device.type == "cpu" or tensor.device == device:
        collective(tensor, **kwargs)
        return
    moved = tensor.to(device)
    collective(moved, **kwargs)
    tensor.copy_(moved)


def _unflatten(flat: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, offset = {}, 0
    for name, t in like.items():
        out[name] = flat[offset:offset + t.numel()].view_as(t)
        offset += t.numel()
    return out
