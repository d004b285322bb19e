"""The one-run privacy audit: its two analyses (Steinke, Nasr & Jagielski 2023; Mahloujifar, Melis & Chaudhuri
2025), and that, run through the engine's own sampling, clipping and noise, it catches a broken engine."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from scipy import stats
from torch import nn

from dpbench.cli import main
from dpbench.privacy import engine
from dpbench.privacy.accountant import epsilon_spent
from dpbench.privacy.audit import AuditSettings, epsilon_lower_bound, max_lower_bound, p_value
from dpbench.privacy.audit_fdp import (PROFILE_EPSILONS, dpsgd_rejected, profile_blow_up_inverse, rejects,
                                       smallest_rejected_noise)
from dpbench.privacy.engine import DPSettings, PrivateTrainer
from dpbench.privacy.per_example import base as clipping
from dpbench.privacy.per_example import with_batched_form
from dpbench.run.audit_report import audit_summary, exceeds_claim

CLAIMED_EPSILON, DELTA = 2.0, 1e-5


def test_the_bound_grows_with_correct_guesses_and_is_capped_by_their_number():
    bounds = [epsilon_lower_bound(1000, 100, v, DELTA) for v in (50, 70, 90, 100)]
    assert bounds[0] == 0.0 and bounds == sorted(bounds) and bounds[-1] == max_lower_bound(1000, 100, DELTA)
    assert 3.3 < max_lower_bound(1000, 100, DELTA) < 3.6  # r = 100 guesses cannot certify more
    assert max_lower_bound(1000, 10, DELTA) < 1.5  # about 10 right guesses are needed to pass ε = 1
    eps = bounds[2]
    assert p_value(1000, 100, 90, eps * 0.99, DELTA) < 0.05 <= p_value(1000, 100, 90, eps * 1.01, DELTA) + 1e-12


def test_bad_audit_settings_are_refused():
    with pytest.raises(ValueError, match="guesses"):
        AuditSettings(canaries=10, guesses_in=8, guesses_out=8)


def _gaussian_profile(mu: float) -> np.ndarray:
    """δ(ε) of μ-GDP (Dong, Roth & Su 2022, Corollary 2.13)."""
    e = PROFILE_EPSILONS
    return stats.norm.cdf(-e / mu + mu / 2) - np.exp(e) * stats.norm.cdf(-e / mu - mu / 2)


def test_the_curve_built_from_a_privacy_profile_is_the_gaussian_curve_from_below():
    """Lines of the profile give the inverse blow-up Φ(Φ⁻¹(y) - μ) of μ-GDP: never above it (a rejection stays
    valid), and within 0.01 of it (the audit stays tight)."""
    for mu in (0.5, 1.0, 2.0):
        inverse = profile_blow_up_inverse(PROFILE_EPSILONS, _gaussian_profile(mu))
        for y in np.linspace(0.02, 0.98, 25):
            exact = stats.norm.cdf(stats.norm.ppf(y) - mu)
            assert exact - 0.01 <= inverse(y) <= exact + 1e-9


def test_the_fdp_analysis_agrees_with_steinke_on_pure_dp_and_is_tighter_on_dp_sgd():
    """For ε-DP (randomized response's curve) both analyses test the same hypothesis and need the same number of
    right guesses, to one; for the curve of a Gaussian mechanism the f-DP analysis rejects its ε with fewer."""
    m, r = 1000, 100
    for eps in (0.5, 1.0, 2.0):
        profile = np.clip((math.exp(eps) - np.exp(PROFILE_EPSILONS)) / (1 + math.exp(eps)), 0, None)
        inverse = profile_blow_up_inverse(PROFILE_EPSILONS, profile)
        needed_fdp = next(v for v in range(r + 1) if rejects(inverse, m, r, v, 0.05))
        needed_steinke = next(v for v in range(r + 1) if p_value(m, r, v, eps, 0.0) < 0.05)
        assert abs(needed_fdp - needed_steinke) <= 1
    sigma = 1.0  # one unsampled step: the Gaussian mechanism
    eps = epsilon_spent(sigma, 1.0, 1, DELTA, "prv")
    needed_fdp = next(v for v in range(r + 1) if dpsgd_rejected(sigma, 1.0, 1, m, r, v, 0.05))
    needed_steinke = next((v for v in range(r + 1) if p_value(m, r, v, eps, DELTA) < 0.05), r + 1)
    assert needed_fdp < needed_steinke


def test_the_fdp_analysis_rejects_the_true_mechanism_at_most_at_its_level():
    """The game played against the mechanism it is tested for (one Gaussian step, σ = 1, every canary's score
    its member bit plus N(0, σ²)): over 300 games the true σ is rejected in at most 5% + slack of them, and σ' = 4σ
    (a claim 4x too strong) in most."""
    rng = np.random.default_rng(0)
    m, k, sigma, level = 500, 25, 1.0, 0.05
    rejected_true = rejected_strong = 0
    for _ in range(300):
        member = rng.random(m) < 0.5
        order = np.argsort(-(member + sigma * rng.standard_normal(m)), kind="stable")
        correct = int(member[order[:k]].sum() + (~member[order[-k:]]).sum())
        rejected_true += dpsgd_rejected(sigma, 1.0, 1, m, 2 * k, correct, level)
        rejected_strong += dpsgd_rejected(4 * sigma, 1.0, 1, m, 2 * k, correct, level)
    assert rejected_true <= 0.05 * 300 + 3 * math.sqrt(300 * 0.05)
    assert rejected_strong > 0.5 * 300


def test_the_fdp_analysis_rejects_the_true_subsampled_mechanism_at_most_at_its_level():
    """The game against DP-SGD itself (q = 1/2, 4 steps, σ = 0.8), scored by the likelihood ratio of the
    subsampled Gaussian, the strongest score there is: in 200 games the true curve is rejected in at most 5% +
    slack, although the guesses are ~93% right."""
    rng = np.random.default_rng(1)
    m, k, q, steps, sigma = 1000, 50, 0.5, 4, 0.8
    rejected, right = 0, []
    for _ in range(200):
        member = rng.random(m) < 0.5
        residuals = ((rng.random((m, steps)) < q) & member[:, None]) + sigma * rng.standard_normal((m, steps))
        score = np.log(1 - q + q * np.exp((residuals - 0.5) / sigma ** 2)).sum(1)
        order = np.argsort(-score, kind="stable")
        correct = int(member[order[:k]].sum() + (~member[order[-k:]]).sum())
        right.append(correct)
        rejected += dpsgd_rejected(sigma, q, steps, m, 2 * k, correct, 0.05)
    assert np.mean(right) > 85 and rejected <= 0.05 * 200 + 3 * math.sqrt(200 * 0.05)


def test_the_rejected_noise_is_the_edge_of_what_is_rejected():
    sigma, q, steps, m, r, v, level = 2.0, 1.0, 1, 1000, 100, 95, 0.05  # one Gaussian step: a cheap curve
    found, at_edge = smallest_rejected_noise(sigma, q, steps, m, r, v, level)
    assert found is not None and not at_edge
    assert dpsgd_rejected(found, q, steps, m, r, v, level)
    assert not dpsgd_rejected(found * 2 ** (-1 / 16), q, steps, m, r, v, level)
    assert smallest_rejected_noise(sigma, q, steps, m, r, r // 2, level) == (None, False)  # chance level


_SIGMAS: dict[tuple, float] = {}


@pytest.fixture(autouse=True)
def _calibrate_once(monkeypatch):
    """Every engine here calibrates the same σ (ε = 2, q = 0.5, 16 steps): computed once, not once per engine."""
    real = engine.calibrate_noise

    def calibrate(epsilon, delta, sample_rate, steps, accountant, prior=()):
        if prior:
            return real(epsilon, delta, sample_rate, steps, accountant, prior=prior)
        key = (epsilon, delta, sample_rate, steps, accountant)
        if key not in _SIGMAS:
            _SIGMAS[key] = real(*key)
        return _SIGMAS[key]

    monkeypatch.setattr(engine, "calibrate_noise", calibrate)


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(128, 10)  # 1,290 trainable coordinates for 1,000 canaries

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def _batched_cross_entropy(model, batch):
    return F.cross_entropy(model(batch["x"]), batch["y"], reduction="none")


@with_batched_form(_batched_cross_entropy)
def _cross_entropy(model_fn, example):
    return F.cross_entropy(model_fn(example["x"].unsqueeze(0)), example["y"].unsqueeze(0))


def _trainer(seed: int = 0, per_example: str = "vmap") -> PrivateTrainer:
    """100 random examples, q = 0.5 (50 expected), 16 steps at ε = 2: a tiny DP-SGD run with 1,000 canaries."""
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, 128, generator=generator), torch.randint(0, 10, (100,), generator=generator)
    settings = DPSettings(expected_batch_size=50, steps=16, max_grad_norm=1.0, per_example=per_example)
    return PrivateTrainer(_Linear(), _cross_entropy, lambda examples, generator: examples, settings, private_x=x,
                          private_y=y, epsilon=CLAIMED_EPSILON, delta=DELTA, device=torch.device("cpu"), seed=seed,
                          audit=AuditSettings())


def _audit(seed: int = 0, per_example: str = "vmap") -> dict:
    trainer = _trainer(seed, per_example)
    trainer.run(torch.optim.SGD(list(trainer.trainable.values()), lr=0.1))
    return trainer.canaries.result(CLAIMED_EPSILON, DELTA)


def _line(label: str, result: dict) -> str:
    guesses = ", ".join(f"{name} {s['correct_guesses']}/{s['guesses']}" for name, s in result["statistics"].items())
    return (f"\naudit, {label}: stage ε = {result['epsilon_claimed']:.3f}, f-DP bound "
            f"{result['epsilon_lower_bound_fdp']:.3f}, Steinke bound {result['epsilon_lower_bound_steinke']:.3f} "
            f"({guesses}; cap {result['max_lower_bound']:.2f})")


def test_canaries_are_poisson_sampled_with_the_examples():
    """Member canaries are drawn in the engine's own sampling call at its rate; non-members never are."""
    trainer = _trainer()
    members, n = trainer.canaries.members(), trainer.n_private
    counts = torch.zeros(trainer.canaries.settings.canaries)
    draws = 200
    for _ in range(draws):
        indices = trainer._sample_indices()
        counts += torch.bincount(indices[indices >= n] - n, minlength=len(counts))
    assert counts[~trainer.canaries.member].sum() == 0
    rate = counts[members].sum().item() / (draws * len(members))
    assert abs(rate - trainer.plan.sample_rate) < 0.01


def test_the_canary_scores_survive_a_checkpoint():
    trainer = _trainer()
    trainer.canaries.observe(torch.ones(1000, dtype=torch.float64))
    trainer.canaries.observe(torch.zeros(1000, dtype=torch.float64))
    state = trainer.canaries.state()
    fresh = _trainer().canaries
    fresh.load_state(state)
    assert fresh.steps == 2 and fresh.sums.eq(1).all() and fresh.step_differences.eq(1).all()


@pytest.mark.slow  # five audited runs
def test_the_honest_engine_is_never_flagged_over_five_seeds():
    for seed in range(5):
        result = _audit(seed)
        print(_line(f"honest engine, seed {seed}", result))
        assert not exceeds_claim(result, CLAIMED_EPSILON)
        assert abs(result["epsilon_claimed"] - CLAIMED_EPSILON) < 0.05  # the stage is the whole run here


def _clipping_off(monkeypatch):
    # what every per-example implementation's clip arithmetic calls (per_example.base.example_weights)
    monkeypatch.setattr(clipping, "clip_factors", lambda norms, max_grad_norm: torch.ones_like(norms))


def _noise_quartered(monkeypatch):
    real = engine.add_gaussian_noise
    monkeypatch.setattr(engine, "add_gaussian_noise",
                        lambda summed, sigma, clip, randomness: real(summed, sigma / 4, clip, randomness))


def _noise_reused(monkeypatch):
    real, drawn = engine.add_gaussian_noise, {}

    def reused(summed, sigma, clip, randomness):
        if not drawn:
            drawn.update(real({n: torch.zeros_like(g) for n, g in summed.items()}, sigma, clip, randomness))
        return {n: g + drawn[n] for n, g in summed.items()}

    monkeypatch.setattr(engine, "add_gaussian_noise", reused)


@pytest.mark.parametrize("broken, per_example", [
    ("real clipping off", "vmap"), ("real clipping off", "ghost"), ("noise σ/4", "vmap"),
    ("one noise vector reused", "vmap")])
def test_a_broken_engine_is_flagged(monkeypatch, broken, per_example):
    {"real clipping off": _clipping_off, "noise σ/4": _noise_quartered,
     "one noise vector reused": _noise_reused}[broken](monkeypatch)
    result = _audit(per_example=per_example)
    print(_line(f"{broken} ({per_example})", result))
    assert exceeds_claim(result, CLAIMED_EPSILON)
    assert result["epsilon_lower_bound_fdp"] > result["epsilon_claimed"]


def test_the_real_clipping_patch_reaches_the_real_examples(monkeypatch):
    """The patched clip is the one the real rows go through: one real example's contribution exceeds C."""
    _clipping_off(monkeypatch)
    trainer = _trainer()
    total, _ = trainer._clipped_sum(torch.tensor([0]))
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in total.values()]))
    assert norm > 1.5  # the example's gradient norm, unclipped (C = 1)


@pytest.mark.slow  # a dp-sgd audit run and a dp-sgd run through the CLI
def test_dpbench_audit_writes_an_audit_record_that_the_leaderboard_shows(tmp_path, shared_cache):
    from dpbench.report.leaderboard import build_leaderboard

    # 100 canaries: this test is about the audit record and its leaderboard label, not the audit's power
    result = CliRunner().invoke(main, ["audit", "--method", "dp-sgd", "--pair", "digits-mnist", "--eps", "1",
                                       "--preset", "smoke", "--canaries", "100", "--guesses", "10",
                                       "--out", str(tmp_path / "runs"), "--cache-dir", str(shared_cache), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"epsilon_lower_bound", "epsilon_lower_bound_fdp", "epsilon_lower_bound_steinke", "epsilon_claimed",
            "canaries", "guesses", "statistics"} <= set(report)
    assert report["canaries"] == 100 and report["guesses"] == 20 and report["epsilon_target"] == 1.0
    assert 0 < report["epsilon_claimed"] <= 1.0 + 1e-6
    assert 0 <= report["epsilon_lower_bound"] <= report["epsilon_claimed"] and math.isfinite(report["max_lower_bound"])
    record = json.loads(open(report["record"]).read())
    assert record["kind"] == "audit" and record["metrics"] == {} and "synthetic" not in record
    text = audit_summary("dp-sgd", "digits-mnist", 1.0, report, report["record"])
    assert f"ε ≥ {report['epsilon_lower_bound_fdp']:.3f} (f-DP" in text and "(Steinke et al. 2023)" in text
    run = CliRunner().invoke(main, ["run", "--method", "dp-sgd", "--pair", "digits-mnist", "--eps", "1",
                                    "--preset", "smoke", "--out", str(tmp_path / "runs"), "--cache-dir",
                                    str(shared_cache)])
    assert run.exit_code == 0, run.output
    page = build_leaderboard(tmp_path / "runs", tmp_path / "board").read_text()
    label = f"ε ≥ {report['epsilon_lower_bound']:.2f} ({report['correct_guesses']}/20, m = 100)"
    assert any(line.startswith("| dp-sgd") and label in line for line in page.splitlines()), page


def test_an_audit_of_a_non_private_run_is_refused(tmp_path, shared_cache):
    result = CliRunner().invoke(main, ["audit", "--method", "public-only", "--pair", "digits-mnist", "--eps", "1",
                                       "--preset", "smoke", "--out", str(tmp_path), "--cache-dir", str(shared_cache)])
    assert result.exit_code == 2 and "public-only" in result.output and "private data" in result.output
