"""Independent random streams derived from a run's seed.

Every stream (DP noise, Poisson sampling, the method's batch randomness, image sampling, evaluation) gets its
own seed from `numpy.random.SeedSequence(seed, spawn_key=...)`, keyed by the stream's name. Seeds s and s + 1
therefore share no stream: before, the sampling stream of seed s was the noise stream of seed s + 1, and
"mean ± std over seeds" was not taken over independent runs.

A run's training streams are keyed by its cell too (`cell_seed`: the seed, ε and config hash), so the ε = 1, 5 and
10 cells of one seed draw different DP noise and sampling masks: from g + σ₁Cz and g + σ₂Cz with a shared z one
could solve for g.
"""
from __future__ import annotations

import hashlib
import zlib

import numpy as np


def stream_seed(seed: int, *path: str | int) -> int:
    """A 63-bit seed for the stream named by `path` (e.g. ("dp", 0, "noise")) of run seed `seed`."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"a run seed must be an int >= 0, got {seed!r}")
    key = tuple(zlib.crc32(part.encode()) if isinstance(part, str) else int(part) for part in path)
    state = np.random.SeedSequence(entropy=seed, spawn_key=key).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])  # < 2**63: fits torch's and numpy's seeds


def cell_seed(seed: int, epsilon: str, config_hash: str) -> int:
    """The seed material of one benchmark cell: run seed `seed` at ε label `epsilon` ("10", "inf") under
    `config_hash`. Two cells that differ in any of the three share no stream derived from it; the same cell run
    twice gets the same streams. The labels enter whole (SHA-256), not through a 32-bit checksum."""
    if not isinstance(epsilon, str) or not isinstance(config_hash, str) or not epsilon or not config_hash:
        raise ValueError(f"a cell is keyed by an ε label and a config hash (non-empty text), got {epsilon!r} and "
                         f"{config_hash!r}")
    words = [int.from_bytes(hashlib.sha256(part.encode()).digest()[:16], "little") for part in ("cell", epsilon,
                                                                                               config_hash)]
    return stream_seed(seed, *words)
