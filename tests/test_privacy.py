"""Property tests of the DP machinery: clipping, noise, sampling, calibration, ledger re-check."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dpbench.privacy.accountant import (
    EPSILON_TOLERANCE,
    LedgerError,
    PrivacyBudgetError,
    calibrate_noise,
    epsilon_of_history,
    epsilon_spent,
    validate_ledger,
)
from dpbench.privacy.engine import DPSettings, PrivateTrainer, add_gaussian_noise
from dpbench.privacy.per_example import base as clipping
from dpbench.privacy.per_example.vmap import VmapGradients
from dpbench.privacy.ledger import PrivacyLedger, PrivacyStage


def clip_and_sum(per_example, max_grad_norm):
    """The engine's clipping path on materialised per-example gradients: (clipped sum, per-example norms)."""
    result = clipping.clip_and_sum(per_example, max_grad_norm)
    return result.summed, result.norms


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


def test_calibration_after_earlier_stages_spends_the_target_in_all():
    """With a prior stage, sigma is calibrated for the composition, so the two stages together meet ε."""
    delta, epsilon = 1e-5, 4.0
    first = (calibrate_noise(2.0, delta, 0.05, 100), 0.05, 100)
    sigma = calibrate_noise(epsilon, delta, 0.1, 50, prior=[first])
    total = epsilon_of_history([first, (sigma, 0.1, 50)], delta, "rdp")
    assert total <= epsilon and epsilon - total <= EPSILON_TOLERANCE + 1e-9
    assert sigma > calibrate_noise(epsilon, delta, 0.1, 50)  # the earlier stage's spend leaves less for this one
    with pytest.raises(PrivacyBudgetError, match="already spend"):
        calibrate_noise(1.0, delta, 0.1, 50, prior=[first])  # the first stage alone spends ~2 > 1


N_PRIVATE = 2000


def _stage(**overrides):
    base = dict(noise_multiplier=1.0, sample_rate=100 / N_PRIVATE, expected_batch_size=100, steps=100,
                planned_steps=100, max_grad_norm=1.0, noise_multiplicity=1)
    return PrivacyStage(**{**base, **overrides})


def _ledger(*stages, **overrides):
    base = dict(accountant="rdp", delta=1e-5, epsilon_target=10.0, n_private=N_PRIVATE,
                stages=stages or (_stage(),))
    return PrivacyLedger(**{**base, **overrides})


def _validate(ledger, epsilon_target, delta=1e-5, n_private=N_PRIVATE):
    return validate_ledger(ledger, epsilon_target=epsilon_target, delta=delta, n_private=n_private)


def test_ledger_recheck_refuses_overspending_and_changed_delta():
    eps = epsilon_of_history(_ledger().history(), 1e-5, "rdp")
    assert _validate(_ledger(epsilon_target=eps + 0.01), eps + 0.01) == pytest.approx(eps)
    with pytest.raises(PrivacyBudgetError, match="exceeds"):
        _validate(_ledger(epsilon_target=eps - 0.01), eps - 0.01)
    with pytest.raises(PrivacyBudgetError, match="delta"):
        _validate(_ledger(epsilon_target=100.0), 100.0, delta=1e-6)
    with pytest.raises(PrivacyBudgetError, match="clip"):
        _validate(_ledger(_stage(max_grad_norm=None), epsilon_target=100.0), 100.0)
    with pytest.raises(PrivacyBudgetError, match="sigma"):
        _validate(_ledger(_stage(noise_multiplier=0.0), epsilon_target=100.0), 100.0)


def test_ledger_recheck_trusts_nothing_the_ledger_claims():
    """Target, n, sample rate and steps are compared with what the harness knows, not taken from the ledger."""
    with pytest.raises(LedgerError, match="target"):
        _validate(_ledger(epsilon_target=100.0), 10.0)  # a ledger claiming a larger budget than requested
    with pytest.raises(LedgerError, match="n_private"):
        _validate(_ledger(n_private=N_PRIVATE * 10), 10.0)
    with pytest.raises(LedgerError, match="sample rate"):  # q smaller than batch / n understates the spend
        _validate(_ledger(_stage(sample_rate=0.001)), 10.0)
    with pytest.raises(LedgerError, match="planned"):
        _validate(_ledger(_stage(steps=101)), 10.0)
    with pytest.raises(LedgerError, match="accountant"):
        _validate(_ledger(accountant="gdp"), 10.0)
    with pytest.raises(PrivacyBudgetError, match="no private step"):
        _validate(_ledger(epsilon_target=0.0), 0.0)


def test_ledger_composes_every_stage():
    """Two stages that each fit the target alone can overspend it together: the re-check must compose them."""
    one = _stage(noise_multiplier=0.8)
    alone = _validate(_ledger(one), 10.0)
    both = epsilon_of_history(_ledger(one, one).history(), 1e-5, "rdp")
    assert alone < both
    with pytest.raises(PrivacyBudgetError, match="exceeds"):
        _validate(_ledger(one, one, epsilon_target=alone + 0.01), alone + 0.01)
    assert _validate(_ledger(one, _stage(steps=0)), 10.0) == pytest.approx(alone)  # an unrun stage spends nothing


class TinyRegressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x)))


def _regression_loss(model_fn, example):
    return (model_fn(example["x"].unsqueeze(0)).squeeze() - example["y"]) ** 2


def _pass_through(examples, generator):
    return examples


def _trainer(model, x, y, settings, epsilon=5.0, **kw):
    return PrivateTrainer(model, _regression_loss, _pass_through, settings, private_x=x, private_y=y, epsilon=epsilon,
                          delta=1e-5, device=torch.device("cpu"), seed=0, **kw)


def test_engine_steps_and_sample_rate_match_ledger_and_only_trainable_params_change():
    torch.manual_seed(0)
    n = 500
    x, y = torch.randn(n, 4), torch.randn(n)
    model = TinyRegressor()
    model.hidden.weight.requires_grad_(False)
    frozen_before = model.hidden.weight.clone()
    trained_before = model.out.weight.clone()
    settings = DPSettings(expected_batch_size=50, steps=40, max_grad_norm=0.5, physical_batch_size=16)
    engine = _trainer(model, x, y, settings)
    optimizer = torch.optim.SGD(list(engine.trainable.values()), lr=0.1)
    engine.run(optimizer)
    stage = engine.spent()
    assert stage.steps == settings.steps == engine.steps_done == len(engine.batch_sizes) == stage.planned_steps
    assert stage.sample_rate == pytest.approx(50 / n)
    mean_batch = sum(engine.batch_sizes) / len(engine.batch_sizes)
    assert abs(mean_batch - 50) < 4 * math.sqrt(50 * (1 - 0.1) / settings.steps) + 1  # Poisson (binomial) mean
    assert len(set(engine.batch_sizes)) > 1  # batches vary in size: sampling is not fixed-size
    assert torch.equal(model.hidden.weight, frozen_before)
    assert not torch.equal(model.out.weight, trained_before)
    assert "hidden.weight" not in engine.trainable
    ledger = PrivacyLedger("rdp", 1e-5, 5.0, n, (stage,))
    assert validate_ledger(ledger, epsilon_target=5.0, delta=1e-5, n_private=n) <= 5.0
    with pytest.raises(RuntimeError, match="planned"):
        engine.step(optimizer)
    assert engine.steps_done == settings.steps  # the refused step was not counted


def test_the_step_is_counted_by_the_call_that_releases_the_gradient():
    """_privatised_gradient counts its step itself: a method calling it directly cannot release uncounted steps."""
    x, y = torch.randn(40, 4), torch.randn(40)
    engine = _trainer(TinyRegressor(), x, y, DPSettings(expected_batch_size=10, steps=2, max_grad_norm=1.0))
    engine._privatised_gradient()
    assert engine.steps_done == 1 and engine.spent().steps == 1
    engine._privatised_gradient()
    with pytest.raises(RuntimeError, match="planned"):
        engine._privatised_gradient()
    assert engine.spent().steps == 2


def test_make_batch_sees_only_the_steps_examples_in_physical_chunks():
    x, y = torch.arange(60, dtype=torch.float32).unsqueeze(1).expand(60, 4).contiguous(), torch.arange(60.0)
    seen = []

    def make_batch(examples, generator):
        assert isinstance(generator, torch.Generator)
        assert torch.equal(examples["x"][:, 0], examples["y"])  # rows of x and y stay paired
        seen.append(len(examples["y"]))
        return examples

    settings = DPSettings(expected_batch_size=30, steps=1, max_grad_norm=1.0, physical_batch_size=8)
    engine = PrivateTrainer(TinyRegressor(), _regression_loss, make_batch, settings, private_x=x, private_y=y,
                            epsilon=5.0, delta=1e-5, device=torch.device("cpu"), seed=0)
    engine._privatised_gradient()
    assert sum(seen) == engine.batch_sizes[0] and max(seen) <= 8


def test_vmap_per_example_grads_match_single_example_backward():
    torch.manual_seed(1)
    x, y = torch.randn(6, 4), torch.randn(6)
    model = TinyRegressor()
    grads = VmapGradients(model, _regression_loss).per_example_grads({"x": x, "y": y})
    for i in range(6):
        model.zero_grad()
        ((model(x[i:i + 1]).squeeze() - y[i]) ** 2).backward()
        assert torch.allclose(grads["out.weight"][i], model.out.weight.grad, atol=1e-6)


def test_non_private_plan_has_no_noise_and_infinite_epsilon():
    x, y = torch.randn(100, 4), torch.randn(100)
    engine = _trainer(TinyRegressor(), x, y, DPSettings(expected_batch_size=10, steps=5, max_grad_norm=1.0),
                      epsilon=math.inf)
    plan = engine.plan
    assert plan.noise_multiplier == 0.0 and plan.max_grad_norm is None and engine.noise_multiplier == 0.0
    ledger = PrivacyLedger("rdp", 1e-5, math.inf, 100, (plan,))
    assert not ledger.is_private
    assert math.isinf(epsilon_of_history(ledger.history(), 1e-5, "rdp"))
    assert math.isinf(validate_ledger(ledger, epsilon_target=math.inf, delta=1e-5, n_private=100))


def test_dp_settings_refuse_bad_values():
    with pytest.raises(ValueError, match="accountant"):
        DPSettings(expected_batch_size=10, steps=5, max_grad_norm=1.0, accountant="gdp")
    with pytest.raises(ValueError, match="steps"):
        DPSettings(expected_batch_size=10, steps=0, max_grad_norm=1.0)
    with pytest.raises(ValueError, match="max_grad_norm"):
        DPSettings(expected_batch_size=10, steps=5, max_grad_norm=0.0)
