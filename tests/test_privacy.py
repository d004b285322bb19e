"""Property tests of the DP machinery: clipping, noise, sampling, calibration, ledger re-check."""
import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from dpbench.privacy.accountant import (EPSILON_TOLERANCE, PrivacyBudgetError, calibrate_noise, epsilon_spent,
                                        recompute_epsilon, verify_ledger)
from dpbench.privacy.engine import DPConfig, DPSGDEngine, add_gaussian_noise, clip_and_sum, plan_privacy
from dpbench.privacy.ledger import PrivacyLedger


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 8), clip=st.floats(0.01, 10.0), scale=st.floats(1e-4, 1e3), seed=st.integers(0, 2**16))
def test_every_clipped_example_has_norm_at_most_c(batch, clip, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    grads = {"w": scale * torch.randn(batch, 5, 3, generator=gen), "b": scale * torch.randn(batch, 3, generator=gen)}
    for i in range(batch):
        one = {k: v[i:i + 1] for k, v in grads.items()}
        summed, norms = clip_and_sum(one, clip)
        clipped_norm = torch.cat([g.flatten() for g in summed.values()]).norm().item()
        assert clipped_norm <= clip * (1 + 1e-5)
        original = norms.item()
        if original < clip:  # small gradients pass unchanged
            assert clipped_norm == pytest.approx(original, rel=1e-4)


def test_noise_has_std_sigma_times_c():
    sigma, clip = 1.7, 0.6
    zeros = {"w": torch.zeros(200_000), "v": torch.zeros(300, 100)}
    noisy = add_gaussian_noise(zeros, sigma, clip, torch.Generator().manual_seed(0))
    values = torch.cat([g.flatten() for g in noisy.values()])
    assert values.std().item() == pytest.approx(sigma * clip, rel=0.01)
    assert values.mean().item() == pytest.approx(0.0, abs=0.01)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
@pytest.mark.parametrize("epsilon", [1.0, 10.0])
def test_calibrated_sigma_meets_target_and_is_smallest(accountant, epsilon):
    q, steps, delta = 0.05, 200, 1e-5
    sigma = calibrate_noise(epsilon, delta, q, steps, accountant)
    spent = epsilon_spent(sigma, q, steps, delta, accountant)
    assert spent <= epsilon
    assert epsilon - spent <= EPSILON_TOLERANCE + 1e-9
    assert epsilon_spent(sigma * 0.98, q, steps, delta, accountant) > spent  # less noise spends more


def _ledger(**overrides):
    base = dict(accountant="rdp", noise_multiplier=1.0, sample_rate=0.05, steps=100, max_grad_norm=1.0,
                delta=1e-5, noise_multiplicity=1, epsilon_target=10.0)
    return PrivacyLedger(**{**base, **overrides})


def test_ledger_recheck_refuses_overspending_and_changed_delta():
    ledger = _ledger()
    eps = recompute_epsilon(ledger)
    assert verify_ledger(ledger, epsilon_target=eps + 0.01, delta=1e-5) == pytest.approx(eps)
    with pytest.raises(PrivacyBudgetError, match="exceeds"):
        verify_ledger(ledger, epsilon_target=eps - 0.01, delta=1e-5)
    with pytest.raises(PrivacyBudgetError, match="delta"):
        verify_ledger(ledger, epsilon_target=100.0, delta=1e-6)
    with pytest.raises(PrivacyBudgetError, match="clip"):
        verify_ledger(_ledger(max_grad_norm=None), epsilon_target=100.0, delta=1e-5)
    with pytest.raises(PrivacyBudgetError):
        verify_ledger(_ledger(noise_multiplier=0.0), epsilon_target=100.0, delta=1e-5)


class TinyRegressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x)))


def _regression_loss(model_fn, example):
    return (model_fn(example["x"].unsqueeze(0)).squeeze() - example["y"]) ** 2


def _make_batch(x, y):
    return lambda idx, gen: {"x": x[idx], "y": y[idx]}


def test_engine_steps_and_sample_rate_match_ledger_and_only_trainable_params_change():
    torch.manual_seed(0)
    n = 500
    x, y = torch.randn(n, 4), torch.randn(n)
    model = TinyRegressor()
    model.hidden.weight.requires_grad_(False)
    frozen_before = model.hidden.weight.clone()
    config = DPConfig(epsilon=5.0, delta=1e-5, expected_batch_size=50, steps=40, max_grad_norm=0.5, physical_batch_size=16)
    engine = DPSGDEngine(model, _regression_loss, config, n, torch.device("cpu"), seed=0)
    optimizer = torch.optim.SGD(list(engine.trainable.values()), lr=0.1)
    ledger = engine.run(_make_batch(x, y), optimizer)
    assert ledger.steps == config.steps == engine.steps_done == len(engine.batch_sizes)
    assert ledger.sample_rate == pytest.approx(50 / n)
    mean_batch = sum(engine.batch_sizes) / len(engine.batch_sizes)
    assert abs(mean_batch - 50) < 4 * math.sqrt(50 * (1 - 0.1) / config.steps) + 1  # Poisson (binomial) mean
    assert len(set(engine.batch_sizes)) > 1  # batches vary in size: sampling is not fixed-size
    assert torch.equal(model.hidden.weight, frozen_before)
    assert "hidden.weight" not in engine.trainable
    assert recompute_epsilon(ledger) <= 5.0
    with pytest.raises(RuntimeError, match="planned"):
        engine.step(_make_batch(x, y), optimizer)


def test_engine_per_example_grads_match_single_example_backward():
    torch.manual_seed(1)
    x, y = torch.randn(6, 4), torch.randn(6)
    model = TinyRegressor()
    engine = DPSGDEngine(model, _regression_loss, DPConfig(10.0, 1e-5, 3, 5, 1.0), 6, torch.device("cpu"), seed=0)
    grads = engine.per_example_grads({"x": x, "y": y})
    for i in range(6):
        model.zero_grad()
        ((model(x[i:i + 1]).squeeze() - y[i]) ** 2).backward()
        assert torch.allclose(grads["out.weight"][i], model.out.weight.grad, atol=1e-6)


def test_non_private_plan_has_no_noise_and_infinite_epsilon():
    ledger = plan_privacy(DPConfig(math.inf, 1e-5, 10, 5, 1.0), 100)
    assert ledger.noise_multiplier == 0.0 and ledger.max_grad_norm is None and not ledger.is_private
    assert math.isinf(recompute_epsilon(ledger))
    assert math.isinf(verify_ledger(ledger, math.inf, 1e-5))
