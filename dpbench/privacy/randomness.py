"""Where the DP engine's randomness comes from: the Gaussian noise and the Poisson sampling.

- `seeded`: torch generators seeded from the run seed (streams derived by `dpbench.seeds`). Reproducible,
  so anyone who knows the seed can regenerate every noise vector: the run is a *simulation* of DP, which is
  what a benchmark wants, not what a release needs.
- `os-seeded`: torch generators seeded from `os.urandom`, never recorded. Not reproducible from the record,
  but a Mersenne-Twister-style generator is not cryptographically secure.
- `secure`: every uniform comes from `os.urandom` (the OS's CSPRNG); normals by Box-Muller, each noise value
  the sum of 4 draws over 2 (as Opacus's secure_mode does, after Holohan & Braghin 2021, "Secure random
  sampling in differential privacy"), which blunts floating-point attacks on a single draw. No key exists to
  record. Opacus's own secure_mode needs torchcsprng, which has had no release since 2021.
"""
from __future__ import annotations

import math
import os

import torch

from dpbench.seeds import stream_seed

RNG_KINDS = ("seeded", "os-seeded", "secure")
RECORD_LABEL = {"seeded": "seeded (simulation)", "os-seeded": "os-seeded", "secure": "secure"}


class TorchRandomness:
    """Noise and sampling from two torch generators (seeded from the run seed, or from the OS)."""

    def __init__(self, kind: str, seed: int, stage: int, device: torch.device,
                 replica: tuple[int, int] | None = None) -> None:
        if kind == "seeded":
            # each data-parallel replica (rank, world size) samples its own shard from a stream of its own
            sampling = ("sampling", "replica", *replica) if replica else ("sampling",)
            noise_seed, sampling_seed = stream_seed(seed, "dp", stage, "noise"), stream_seed(seed, "dp", stage, *sampling)
        else:
            noise_seed, sampling_seed = (int.from_bytes(os.urandom(8), "little") >> 1 for _ in range(2))
        self.kind = kind
        self._noise = torch.Generator(device=device).manual_seed(noise_seed)
        self._sampling = torch.Generator().manual_seed(sampling_seed)

    def normal(self, shape, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.randn(shape, generator=self._noise, device=device, dtype=dtype)

    def uniform(self, n: int) -> torch.Tensor:
        return torch.rand(n, generator=self._sampling)

    def state(self) -> dict:
        return {"noise": self._noise.get_state(), "sampling": self._sampling.get_state()}

    def set_state(self, state: dict) -> None:
        self._noise.set_state(state["noise"])
        self._sampling.set_state(state["sampling"])


def _secure_uniform_open(n: int) -> torch.Tensor:
    """n float64 uniforms in (0, 1] with 53 random bits each, from os.urandom."""
    words = torch.frombuffer(bytearray(os.urandom(8 * n)), dtype=torch.int64) if n else torch.zeros(0, dtype=torch.int64)
    bits = (words & ((1 << 53) - 1)).to(torch.float64)
    return (bits + 1) / float(1 << 53)


class SecureRandomness:
    kind = "secure"

    def normal(self, shape, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        n = math.prod(shape)
        total = torch.zeros(n, dtype=torch.float64)
        for _ in range(4):
            half = (n + 1) // 2
            u1, u2 = _secure_uniform_open(half), _secure_uniform_open(half)
            radius = torch.sqrt(-2.0 * torch.log(u1))
            total += torch.cat([radius * torch.cos(2 * math.pi * u2), radius * torch.sin(2 * math.pi * u2)])[:n]
        return (total / 2).reshape(shape).to(device=device, dtype=dtype)

    def uniform(self, n: int) -> torch.Tensor:
        return (_secure_uniform_open(n) - 0.5 / float(1 << 53)).to(torch.float32)

    def state(self) -> dict:
        # os.urandom has no state to keep: a resumed secure stage cannot redraw a lost step's noise, so the engine
        # charges every step started after its checkpoint as taken (privacy.checkpoint's write-ahead counter)
        return {}

    def set_state(self, state: dict) -> None:
        pass


def engine_randomness(kind: str, seed: int, stage: int, device: torch.device, replica: tuple[int, int] | None = None):
    """`replica` is (rank, world size) for one of several data-parallel processes, None in a single process."""
    if kind not in RNG_KINDS:
        raise ValueError(f"rng must be one of {RNG_KINDS}, got '{kind}'")
    return SecureRandomness() if kind == "secure" else TorchRandomness(kind, seed, stage, device, replica)
