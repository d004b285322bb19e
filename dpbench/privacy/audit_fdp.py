"""The one-run f-DP audit of Mahloujifar, Melis & Chaudhuri (ICML 2025, "Auditing f-differential privacy in one
run", arXiv:2410.22235), for the DP-SGD stage the canaries ran in.

The game is Steinke et al.'s (dpbench.privacy.audit): m canaries, each in with probability 1/2, an auditor that
makes k guesses and gets c right. Steinke et al. bound P[>= c right] for an (ε, δ)-DP mechanism, which
knows one point of the mechanism's privacy curve. Mahloujifar et al. bound it with the whole trade-off curve f:
with the blow-up function of f (the largest probability an event can have under one neighbour when it has
probability x under the other, 1 - f(x)), a backward recursion over the number of right guesses (their
Algorithm "r/h with cap") shows that P[>= c right] < τ whenever its mass exceeds k/m, the most that k guesses
of m canaries can hold. Where that happens, the hypothesis "the mechanism is f-DP" is rejected at level τ.

The hypotheses tested here are the engine's own: DP-SGD with the stage's sample rate q and step count T at a
noise multiplier σ', i.e. the trade-off curve of T Poisson-subsampled Gaussian steps, computed from its privacy
profile δ(ε) (dp-accounting's privacy loss distribution, pessimistic estimate, so every δ is an upper bound and
the curve a lower bound: a rejection stays valid). A larger σ' is a stronger claim, rejected more easily; the
audit finds the smallest σ' on a fine grid that it still rejects and reports ε(σ'), by the engine's own
accountant, as its lower bound. The bound exceeds the stage's claimed ε exactly when the claimed σ itself is
rejected, i.e. when the run does not behave like the DP-SGD its ledger accounts for.

The paper itself reports empirical ε against Gaussian (μ-GDP) curves; the engine's own curve is used here
because a subsampled Gaussian is not μ-GDP at the μ that matches its (ε, δ), so rejecting that μ would not
contradict the claim. The recursion was checked against two public readings of the paper (Google's jax_privacy
auditing.py and Meta's privacy_guard FDPAnalysisNode); nothing of theirs is imported.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np

# The lines the trade-off curve is built from: ε from 0 to 40, dense where one-run audits land (below 6), sparse
# above. Fewer lines only weaken the curve (the audit stays valid, a little less tight); one-run audits of
# m <= 10^4 canaries do not reach ε = 40.
PROFILE_EPSILONS = np.concatenate([np.arange(0.0, 6.0, 0.05), np.arange(6.0, 16.0, 0.25), np.arange(16.0, 40.5, 1.0)])
# dp-accounting's value_discretization_interval: pessimistic, so coarser is still an upper bound on δ(ε)
PLD_DISCRETIZATION = 1e-3
# σ' = σ_claimed * 2^(j / GRID_PER_OCTAVE) for j in [-GRID_BELOW, GRID_ABOVE]: from σ/32 (a far leakier run) to 8σ
GRID_PER_OCTAVE, GRID_BELOW, GRID_ABOVE = 16, 80, 48


def rejects(blow_up_inverse: Callable[[float], float], m: int, guesses: int, correct: int,
            significance: float) -> bool:
    """Whether `correct` right guesses of `guesses` (of m canaries) reject "the mechanism is f-DP" at level
    `significance`, where `blow_up_inverse` is the inverse of f's blow-up function (Mahloujifar et al. 2025).

    Suppose P[>= c right] = τ. The recursion walks down from c right guesses, spreading the mass the blow-up
    function forces onto each smaller count: r is the mass on right guesses, h on wrong ones. If their total
    exceeds k/m, no f-DP mechanism can put τ on c or more right guesses, and the hypothesis is rejected."""
    if not 0 <= correct <= guesses <= m:
        raise ValueError(f"need 0 <= correct <= guesses <= m, got correct={correct}, guesses={guesses}, m={m}")
    if correct == 0:
        return False
    right = significance * correct / m
    wrong = significance * (guesses - correct) / m
    for count in range(correct - 1, -1, -1):
        forced = max(wrong, blow_up_inverse(right))
        if forced == wrong:  # nothing moves any more: neither mass changes at a smaller count
            break
        right = min(1.0, right + count / (guesses - count) * (forced - wrong))
        wrong = forced
    return right + wrong > guesses / m


def profile_blow_up_inverse(epsilons: np.ndarray, deltas: np.ndarray) -> Callable[[float], float]:
    """The inverse blow-up function of a mechanism whose privacy profile δ(ε) holds both ways round: the least
    probability an event can have under one neighbour when it has probability y under the other. Each (ε, δ)
    gives two lines, P ≥ (y - δ) e^-ε and, by the complement, P ≥ 1 - δ - e^ε (1 - y)."""
    grow, shrink = np.exp(epsilons), np.exp(-epsilons)

    def inverse(y: float) -> float:
        return max(0.0, float(np.max(np.maximum((y - deltas) * shrink, 1.0 - deltas - grow * (1.0 - y)))))

    return inverse


def _privacy_loss_distributions():
    """dp-accounting's PLD module, imported on first use; its absl log handler is pointed at the process's own
    stderr (one that pytest or click swaps and closes would kill the process at the next log line)."""
    import sys

    from absl import logging as absl_logging
    from dp_accounting.pld import privacy_loss_distribution

    absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__
    return privacy_loss_distribution


@functools.lru_cache(maxsize=1024)
def dpsgd_profile(noise_multiplier: float, sample_rate: float, steps: int) -> np.ndarray:
    """δ(ε) at PROFILE_EPSILONS of `steps` Poisson-subsampled Gaussian steps (add and remove both covered)."""
    pld = _privacy_loss_distributions().from_gaussian_mechanism(
        standard_deviation=noise_multiplier, sampling_prob=sample_rate,
        value_discretization_interval=PLD_DISCRETIZATION, pessimistic_estimate=True)
    if steps > 1:
        pld = pld.self_compose(steps)
    return np.minimum(1.0, np.asarray(pld.get_delta_for_epsilon(PROFILE_EPSILONS), dtype=np.float64))


def dpsgd_rejected(noise_multiplier: float, sample_rate: float, steps: int, m: int, guesses: int, correct: int,
                   significance: float) -> bool:
    """Whether the guesses reject "the canaries went through DP-SGD at this σ, q and T"."""
    inverse = profile_blow_up_inverse(PROFILE_EPSILONS, dpsgd_profile(noise_multiplier, sample_rate, steps))
    return rejects(inverse, m, guesses, correct, significance)


def smallest_rejected_noise(noise_multiplier: float, sample_rate: float, steps: int, m: int, guesses: int,
                            correct: int, significance: float) -> tuple[float | None, bool]:
    """(σ*, at_grid_edge): the smallest noise multiplier on the grid around the claimed one whose DP-SGD the
    guesses reject (None when even 8σ is not rejected); at_grid_edge when σ/32 is rejected too, so the true
    σ* may be smaller still. Rejection only grows with σ', so a bisection over the grid finds it."""
    def grid(j: int) -> float:
        return noise_multiplier * 2.0 ** (j / GRID_PER_OCTAVE)

    def rejected(j: int) -> bool:
        return dpsgd_rejected(grid(j), sample_rate, steps, m, guesses, correct, significance)

    low, high = -GRID_BELOW, GRID_ABOVE
    if not rejected(high):
        return None, False
    if rejected(low):
        return grid(low), True
    while high - low > 1:  # invariant: low not rejected, high rejected
        middle = (low + high) // 2
        low, high = (low, middle) if rejected(middle) else (middle, high)
    return grid(high), False


def fdp_lower_bound(noise_multiplier: float, sample_rate: float, steps: int, m: int, guesses: int, correct: int,
                    significance: float, epsilon_of: Callable[[float], float]) -> dict:
    """The f-DP audit's bound: ε(σ*) by `epsilon_of` (the engine's accountant at the user's δ), 0 when no grid σ'
    is rejected; `at_grid_edge` when the bound is only the grid's floor."""
    if not noise_multiplier > 0 or steps < 1:
        raise ValueError(f"an f-DP audit needs a private stage that ran (σ > 0, steps >= 1); got σ = "
                         f"{noise_multiplier}, steps = {steps}")
    sigma, at_edge = smallest_rejected_noise(noise_multiplier, sample_rate, steps, m, guesses, correct,
                                             significance)
    epsilon = 0.0 if sigma is None else epsilon_of(sigma)
    return {"epsilon_lower_bound": epsilon if math.isfinite(epsilon) else math.inf,
            "noise_multiplier_rejected": sigma, "at_grid_edge": at_edge}
