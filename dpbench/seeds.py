"""Independent random streams derived from a run's seed.

Every stream (DP noise, Poisson sampling, the method's batch randomness, image sampling, evaluation) gets its
own seed from `numpy.random.SeedSequence(seed, spawn_key=...)`, keyed by the stream's name. Seeds s and s + 1
therefore share no stream: before, the sampling stream of seed s was the noise stream of seed s + 1, and
"mean ± std over seeds" was not taken over independent runs.
"""
from __future__ import annotations

import zlib

import numpy as np


def stream_seed(seed: int, *path: str | int) -> int:
    """A 63-bit seed for the stream named by `path` (e.g. ("dp", 0, "noise")) of run seed `seed`."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"a run seed must be an int >= 0, got {seed!r}")
    key = tuple(zlib.crc32(part.encode()) if isinstance(part, str) else int(part) for part in path)
    state = np.random.SeedSequence(entropy=seed, spawn_key=key).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])  # < 2**63: fits torch's and numpy's seeds
