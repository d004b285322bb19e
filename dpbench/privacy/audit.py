"""An empirical lower bound on ε from one training run (Steinke, Nasr & Jagielski 2023, "Privacy auditing with
one (1) training run", arXiv:2305.08846): white-box gradient canaries.

m canaries join the private training split, each independently with probability 1/2. A canary is a Dirac
gradient: its per-example gradient is `scale` (> C, so clipping matters) on one trainable coordinate of its own,
and zero elsewhere; it is Poisson-sampled, clipped and noised by the engine exactly like a real example. The
auditor sees every released (noisy) gradient and scores each canary by the sum of its coordinate over the steps.
The auditor is DP's adversary, who may know every other record: it subtracts the real examples' (known) part
of each released sum, which leaves the canary's clipped gradient plus the Gaussian noise. It guesses "in" for
the k+ highest scores and "out" for the k- lowest, abstaining on the rest, and counts the
correct guesses v of r = k+ + k-. Under (ε, δ)-DP, P[v or more correct] is at most the paper's p-value
(Theorem 5.2 / its Algorithm: a Binomial(r, e^ε / (1 + e^ε)) tail plus a δ term); the lower bound is the
largest ε that this p-value rejects at 95% confidence.

A one-run bound is capped by r: with every guess right, it cannot exceed `max_lower_bound(m, r)` (about 2.8 for
r = 50, 3.5 for r = 100 at 95%), so the audit can flag an engine that leaks far more than ε = 1, not certify
a tight ε = 10.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from scipy import stats

CONFIDENCE = 0.95
# 1,000 canaries with 50 + 50 guesses: Steinke et al. sweep m and the guesses; this many fits the smallest
# default scope (LoDA, 29,544 trainable coordinates) and lets a fully leaking engine reach a bound of ~3.5.
DEFAULT_CANARIES = 1000
DEFAULT_GUESSES = 50  # k+ = k- = 50
CANARY_SCALE = 100.0  # the canary gradient's norm in units of C: clipped to C by a working engine


@dataclass(frozen=True)
class AuditSettings:
    canaries: int = DEFAULT_CANARIES
    guesses_in: int = DEFAULT_GUESSES
    guesses_out: int = DEFAULT_GUESSES
    confidence: float = CONFIDENCE
    scale: float = CANARY_SCALE

    def __post_init__(self) -> None:
        if self.canaries < 2 or self.guesses_in < 0 or self.guesses_out < 0:
            raise ValueError("an audit needs >= 2 canaries and non-negative guess counts")
        if self.guesses_in + self.guesses_out > self.canaries or self.guesses_in + self.guesses_out == 0:
            raise ValueError(f"guesses ({self.guesses_in} + {self.guesses_out}) must be between 1 and the canary "
                             f"count ({self.canaries})")
        if not 0.5 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0.5, 1), got {self.confidence}")

    def to_dict(self) -> dict:
        return asdict(self)


def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[>= v correct of r guesses] under the null hypothesis "(ε, δ)-DP" (Steinke et al. 2023, Alg. 2)."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    q = 1 / (1 + math.exp(-epsilon))  # the accuracy of ε-DP randomized response
    tail = stats.binom.sf(v - 1, r, q)
    alpha, mass = 0.0, 0.0
    for i in range(1, v + 1):
        mass += stats.binom.pmf(v - i, r, q)
        alpha = max(alpha, mass / i)
    return min(1.0, tail + alpha * delta * 2 * m)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, confidence: float = CONFIDENCE) -> float:
    """The largest ε whose p-value for v correct guesses is below 1 - confidence (0 when none is)."""
    level = 1 - confidence
    if p_value(m, r, v, 0.0, delta) >= level:
        return 0.0
    low, high = 0.0, 1.0
    while p_value(m, r, v, high, delta) < level:
        low, high = high, high * 2
        if high > 1e3:
            return math.inf
    for _ in range(60):
        middle = (low + high) / 2
        if p_value(m, r, v, middle, delta) < level:
            low = middle
        else:
            high = middle
    return low


def max_lower_bound(m: int, r: int, delta: float, confidence: float = CONFIDENCE) -> float:
    """The largest bound the audit can report: every one of its r guesses right."""
    return epsilon_lower_bound(m, r, r, delta, confidence)


class GradientCanaries:
    """The canaries of one audited DP stage: who is in, which coordinate is whose, and the running scores."""

    def __init__(self, settings: AuditSettings, n_coordinates: int, generator: torch.Generator) -> None:
        if n_coordinates < settings.canaries:
            raise ValueError(f"{settings.canaries} canaries need as many trainable coordinates; the scope has "
                             f"{n_coordinates}")
        self.settings = settings
        self.coordinates = torch.randperm(n_coordinates, generator=generator)[:settings.canaries]
        self.member = torch.rand(settings.canaries, generator=generator) < 0.5
        self.scores = torch.zeros(settings.canaries, dtype=torch.float64)

    def guesses(self) -> tuple[int, int]:
        """(r, v): guesses made and guesses right, "in" for the top k+ scores and "out" for the bottom k-."""
        order = torch.argsort(self.scores, descending=True, stable=True)
        k_in, k_out = self.settings.guesses_in, self.settings.guesses_out
        right = int(self.member[order[:k_in]].sum())
        right += int((~self.member[order[len(order) - k_out:]]).sum()) if k_out else 0
        return k_in + k_out, right

    def result(self, epsilon: float, delta: float) -> dict:
        r, v = self.guesses()
        m = self.settings.canaries
        return {"epsilon_lower_bound": epsilon_lower_bound(m, r, v, delta, self.settings.confidence),
                "epsilon_claimed": epsilon, "delta": delta, "canaries": m, "canaries_in": int(self.member.sum()),
                "guesses": r, "correct_guesses": v,
                "max_lower_bound": max_lower_bound(m, r, delta, self.settings.confidence),
                "kind": "white-box gradient canaries (Dirac)", **self.settings.to_dict()}
