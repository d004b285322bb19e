"""An empirical lower bound on ε from one training run, through the engine's own sampling, clipping and noise:
white-box gradient canaries (Steinke, Nasr & Jagielski 2023, "Privacy auditing with one (1) training run",
arXiv:2305.08846), bounded by their analysis and by the tighter f-DP one of Mahloujifar, Melis & Chaudhuri
(ICML 2025; dpbench.privacy.audit_fdp).

m canaries join the private training split, each independently with probability 1/2. A canary is a Dirac
gradient: its per-example gradient is `scale` (> C, so clipping matters) on one trainable coordinate of its own,
and zero elsewhere. The member canaries are examples of the split as far as the engine is concerned:
- they are Poisson-sampled in the same draw as the real examples (PrivateTrainer._sample_indices), at the same
  rate, from the engine's own randomness;
- their clip weight comes from per_example.base.example_weights, the clip arithmetic that every per-example
  implementation (vmap, hooks, ghost) calls for the real rows: a clip that is off or weakened there is off or
  weakened for the canaries;
- they are added to the step's clipped sum before the engine's add_gaussian_noise, with its σ, its C and its
  noise generator, so noise that is too small or drawn once and reused shows in their coordinates.
What the canaries do not go through is the model's forward and backward: a Dirac gradient on an arbitrary
coordinate has no input that produces it. A per-example norm that an implementation gets wrong for real rows
(rows that mix examples, a wrong ghost norm) is the engine self-test's to catch (ghost and hooks against vmap,
one row per example), not the audit's.

The auditor sees every released (noisy) gradient. It is DP's adversary, who may know every other record: it
subtracts the real examples' (known) part of each released sum, which leaves, per step, the canary's clipped
gradient when sampled plus the Gaussian noise. Two statistics score each canary:
- "sum": the sum of its residuals over the steps (Steinke et al.'s score): power against missing clipping or
  too little noise;
- "step_differences": the sum of squared differences of consecutive residuals. Fresh noise gives every canary
  about 2(T-1)σ²C²; noise drawn once and reused cancels, leaving a non-member 0 and a member its in/out
  switches times C². Power against noise that repeats.
For each, the auditor guesses "in" for the k+ highest scores and "out" for the k- lowest, abstaining on the rest,
and counts the correct guesses v of r = k+ + k-. Two analyses turn (r, v) into a bound:
- Steinke et al.: under (ε, δ)-DP, P[v or more right] is at most a Binomial(r, e^ε / (1 + e^ε)) tail plus a
  δ term (Theorem 5.2 / their Algorithm 2); the bound is the largest ε this rejects;
- Mahloujifar et al.: the stage's own trade-off curve (DP-SGD at σ', q, T) rejected for every σ' at or above some
  σ*; the bound is ε(σ*) by the stage's accountant (dpbench.privacy.audit_fdp).
Four tests in all, each run at (1 - confidence) / 4 (Bonferroni), so the largest of the four bounds is a lower
bound at `confidence`. It is held against the audited stage's own ε (its σ, q and steps by its accountant).

A one-run bound is capped by r: with every guess right, it cannot exceed `max_lower_bound` (Steinke et al.'s is
about 2.8 for r = 50 and 3.5 for r = 100 at 95%; the f-DP one is higher), so the audit flags an engine that leaks
far more than it claims, not a tight ε = 10.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import stats

from dpbench.privacy.accountant import epsilon_spent
from dpbench.privacy.audit_fdp import fdp_lower_bound

CONFIDENCE = 0.95
# 1,000 canaries with 50 + 50 guesses: Steinke et al. sweep m and the guesses; this many fits the smallest
# default scope (LoDA, 29,544 trainable coordinates) and lets a fully leaking engine reach a bound of ~3.5.
DEFAULT_CANARIES = 1000
DEFAULT_GUESSES = 50  # k+ = k- = 50
CANARY_SCALE = 100.0  # the canary gradient's norm in units of C: clipped to C by a working engine
ANALYSES = ("steinke", "fdp")
_epsilon_spent = functools.lru_cache(maxsize=4096)(epsilon_spent)  # the f-DP search asks for the same σ' again
TESTS = 2 * len(ANALYSES)  # two statistics (sum, step differences) by two analyses: Bonferroni over four


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
    """The canaries of one audited DP stage: who is in, which coordinate is whose, the mechanism the stage claims
    (σ, q and its accountant), and the running scores of every statistic."""

    def __init__(self, settings: AuditSettings, n_coordinates: int, seed: int, *,
                 noise_multiplier: float, sample_rate: float, accountant: str) -> None:
        if n_coordinates < settings.canaries:
            raise ValueError(f"{settings.canaries} canaries need as many trainable coordinates; the scope has "
                             f"{n_coordinates}")
        if not noise_multiplier > 0:
            raise ValueError(f"an audited stage adds noise (σ > 0); got σ = {noise_multiplier}")
        self.settings = settings
        self.noise_multiplier, self.sample_rate, self.accountant = noise_multiplier, sample_rate, accountant
        # Drawn by PCG64, a generator of another family than the seeded noise's (torch's MT19937, seeded from
        # 32 bits). When both were MT19937, one cell seed of the honest engine put 39 of the 50 largest noise sums
        # on member canaries (69 of 100 guesses right on noise alone, flagged); none of 3,000 other seeds reached 69.
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
        self.coordinates = torch.from_numpy(rng.choice(n_coordinates, settings.canaries, replace=False))
        self.member = torch.from_numpy(rng.random(settings.canaries) < 0.5)
        self.steps = 0
        self.sums = torch.zeros(settings.canaries, dtype=torch.float64)
        self.step_differences = torch.zeros(settings.canaries, dtype=torch.float64)
        self.last: torch.Tensor | None = None

    def members(self) -> torch.Tensor:
        """The canaries that are in the private split, by index: the only ones the engine may sample."""
        return torch.nonzero(self.member).flatten()

    def observe(self, residual: torch.Tensor) -> None:
        """One released step, as the auditor sees it: each canary's coordinate less the real examples' part."""
        self.sums += residual
        if self.last is not None:
            self.step_differences += (residual - self.last).square()
        self.last = residual.clone()
        self.steps += 1

    def scores(self) -> dict[str, torch.Tensor]:
        return {"sum": self.sums, "step_differences": self.step_differences}

    def guesses(self, scores: torch.Tensor) -> tuple[int, int]:
        """(r, v): guesses made and guesses right, "in" for the top k+ scores and "out" for the bottom k-."""
        order = torch.argsort(scores, descending=True, stable=True)
        k_in, k_out = self.settings.guesses_in, self.settings.guesses_out
        right = int(self.member[order[:k_in]].sum())
        right += int((~self.member[order[len(order) - k_out:]]).sum()) if k_out else 0
        return k_in + k_out, right

    def state(self) -> dict:
        return {"steps": self.steps, "sums": self.sums.clone(), "step_differences": self.step_differences.clone(),
                "last": None if self.last is None else self.last.clone()}

    def load_state(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.sums, self.step_differences = state["sums"].clone(), state["step_differences"].clone()
        self.last = None if state["last"] is None else state["last"].clone()

    def claimed_epsilon(self, delta: float) -> float:
        """The audited stage's own ε over the steps it ran, by its accountant: what the audit is held against."""
        return epsilon_spent(self.noise_multiplier, self.sample_rate, self.steps, delta, self.accountant)

    def result(self, epsilon: float, delta: float) -> dict:
        """Both analyses of both statistics, each at (1 - confidence) / TESTS, and the largest of the four bounds:
        the audit's verdict is that bound against the stage's claimed ε, at `confidence` over all four."""
        m, significance = self.settings.canaries, (1 - self.settings.confidence) / TESTS
        claimed = self.claimed_epsilon(delta)

        def epsilon_of(noise_multiplier: float) -> float:
            with warnings.catch_warnings(), np.errstate(all="ignore"):  # far below σ the accountant overflows to ∞
                warnings.simplefilter("ignore")
                return _epsilon_spent(noise_multiplier, self.sample_rate, self.steps, delta, self.accountant)

        def bounds(r: int, v: int) -> dict[str, float]:
            if not self.steps:
                return {"steinke": 0.0, "fdp": 0.0}
            fdp = fdp_lower_bound(self.noise_multiplier, self.sample_rate, self.steps, m, r, v, significance,
                                  epsilon_of)
            return {"steinke": epsilon_lower_bound(m, r, v, delta, 1 - significance),
                    "fdp": fdp["epsilon_lower_bound"]}

        statistics = {}
        for name, scores in self.scores().items():
            r, v = self.guesses(scores)
            statistics[name] = {"guesses": r, "correct_guesses": v, **bounds(r, v)}
        best = max(((s, a) for s in statistics for a in ANALYSES), key=lambda key: statistics[key[0]][key[1]])
        r = statistics[best[0]]["guesses"]
        caps = bounds(r, r)
        return {"epsilon_lower_bound": statistics[best[0]][best[1]], "statistic": best[0], "analysis": best[1],
                "epsilon_lower_bound_steinke": max(s["steinke"] for s in statistics.values()),
                "epsilon_lower_bound_fdp": max(s["fdp"] for s in statistics.values()),
                "epsilon_claimed": claimed, "epsilon_target": epsilon, "delta": delta, "canaries": m,
                "canaries_in": int(self.member.sum()), "guesses": r,
                "correct_guesses": statistics[best[0]]["correct_guesses"], "statistics": statistics,
                "max_lower_bound": max(caps.values()), "confidence_per_test": 1 - significance,
                "steps": self.steps, "noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate,
                "accountant": self.accountant, "kind": "white-box gradient canaries (Dirac), as examples",
                **self.settings.to_dict()}
