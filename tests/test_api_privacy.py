"""The harness keeps the privacy books: methods see only what they may, and cannot take a private step uncounted.

Each test installs a method plugin that tries something a method must not be able to do, runs it through the
real runner, and checks that it fails with a clear reason (and that no completed record is written).
"""
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import dpbench
from dpbench.api.registry import load_registry
from dpbench.privacy.accountant import epsilon_of_history
from dpbench.privacy.books import PrivacyBooks
from dpbench.run.progress import SilentProgress
from dpbench.run.runner import RunRequest, execute

torch.set_num_threads(2)


@dataclass(frozen=True)
class TinySettings:
    steps: int = dpbench.setting(5, "DP steps", minimum=1)
    batch_size: int = dpbench.setting(32, "expected batch size", minimum=1)
    samples_per_class: int = dpbench.setting(2, "samples per class", minimum=1)


class MeanModel(nn.Module):
    def __init__(self, shape=(1, 28, 28)):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(shape))

    def forward(self, x):
        return self.mean.expand_as(x)


def mse_loss(model_fn, example):
    x = example["x"].unsqueeze(0)
    return ((model_fn(x) - x) ** 2).mean()


def identity_batch(examples, generator):
    return examples


def to_unit(images):
    return images.float() / 255


class ConstantGenerator:
    def __init__(self, model):
        self.model = model

    def sample(self, labels, seed, progress=None):
        image = (self.model.mean.detach().clamp(0, 1) * 255).to(torch.uint8)
        return image.unsqueeze(0).repeat(len(labels), 1, 1, 1)


class TinyMethod(dpbench.Method):
    description = "test method"
    Settings = TinySettings

    def settings(self, preset, pair):
        return TinySettings()

    def dp(self, settings, **extra):
        return dpbench.DPSettings(expected_batch_size=settings.batch_size, steps=settings.steps, max_grad_norm=1.0,
                                  **extra)


class HonestMethod(TinyMethod):
    name = "honest"

    def train(self, ctx, settings):
        model = MeanModel()
        trainer = ctx.private_trainer(model, mse_loss, identity_batch, self.dp(settings), prepare=to_unit)
        trainer.run(torch.optim.SGD(model.parameters(), lr=1.0))
        return dpbench.MethodResult(ConstantGenerator(model), 784, 784)


class ReadsTestSplit(TinyMethod):
    name = "reads-test-split"

    def train(self, ctx, settings):
        ctx.private_test  # noqa: B018 - the attempt is the point
        raise AssertionError("unreachable")


class ReadsPairData(TinyMethod):
    name = "reads-pair-data"

    def train(self, ctx, settings):
        ctx.data.private_train  # noqa: B018
        raise AssertionError("unreachable")


class TrainsWithoutEngine(TinyMethod):
    """Claims to train on private data but never asks for an engine (e.g. it loaded the data itself)."""

    name = "no-engine"

    def train(self, ctx, settings):
        return dpbench.MethodResult(ConstantGenerator(MeanModel()), 784, 784)


class LoopsOverGradient(TinyMethod):
    """Calls the engine's gradient function directly, around `step`, many more times than planned."""

    name = "gradient-loop"

    def train(self, ctx, settings):
        model = MeanModel()
        trainer = ctx.private_trainer(model, mse_loss, identity_batch, self.dp(settings), prepare=to_unit)
        for _ in range(500):
            trainer._privatised_gradient()
        return dpbench.MethodResult(ConstantGenerator(model), 784, 784)


class TwoStages(TinyMethod):
    name = "two-stages"

    def train(self, ctx, settings):
        model = MeanModel()
        for _ in range(2):
            trainer = ctx.private_trainer(model, mse_loss, identity_batch, self.dp(settings), prepare=to_unit,
                                          budget_share=0.5)
            trainer.run(torch.optim.SGD(model.parameters(), lr=1.0))
        return dpbench.MethodResult(ConstantGenerator(model), 784, 784)


class OverShares(TinyMethod):
    name = "over-shares"

    def train(self, ctx, settings):
        model = MeanModel()
        ctx.private_trainer(model, mse_loss, identity_batch, self.dp(settings), budget_share=0.7)
        ctx.private_trainer(model, mse_loss, identity_batch, self.dp(settings), budget_share=0.7)
        raise AssertionError("unreachable")


class PublicOnlyTrier(TinyMethod):
    name = "public-trier"
    trains_on_private = False

    def train(self, ctx, settings):
        assert ctx.private is None
        ctx.private_trainer(MeanModel(), mse_loss, identity_batch, self.dp(settings))
        raise AssertionError("unreachable")


class TestPlugin:
    @staticmethod
    @dpbench.hookimpl
    def dpbench_register_methods(register):
        for cls in (HonestMethod, ReadsTestSplit, ReadsPairData, TrainsWithoutEngine, LoopsOverGradient, TwoStages,
                    OverShares, PublicOnlyTrier):
            register(cls())


@pytest.fixture(scope="module")
def registry():
    return load_registry(extra_modules=[TestPlugin])


@pytest.fixture(scope="module")
def pair_data(registry):
    return registry.pair("digits-mnist").load(None)


def _run(registry, pair_data, tmp_path, cache, method, epsilon=1.0):
    request = RunRequest(method=method, pair="digits-mnist", epsilon=epsilon, preset="smoke", out=tmp_path / "runs",
                         cache_dir=cache, evaluators=[], device="cpu")
    return execute(registry, request, SilentProgress(), data=pair_data)


def test_honest_method_completes_with_the_harness_ledger(registry, pair_data, tmp_path, shared_cache):
    outcome = _run(registry, pair_data, tmp_path, shared_cache, "honest")
    assert outcome.ok, outcome.record.get("error")
    privacy = outcome.record["privacy"]
    assert privacy["steps"] == 5 and len(privacy["stages"]) == 1
    assert privacy["stages"][0]["sample_rate"] == 32 / 4000
    assert 0 < privacy["epsilon"] <= 1.0


@pytest.mark.parametrize("method, words", [("reads-test-split", "only evaluators"), ("reads-pair-data", "ctx.public")])
def test_a_method_cannot_read_the_scoring_data(registry, pair_data, tmp_path, shared_cache, method, words):
    outcome = _run(registry, pair_data, tmp_path, shared_cache, method)
    assert not outcome.ok
    assert outcome.record["error"]["type"] == "PermissionError"
    assert words in outcome.record["error"]["message"]
    assert not (outcome.record_path.parent / "samples.png").exists()


def test_training_without_the_engine_fails_instead_of_recording_eps_zero(registry, pair_data, tmp_path, shared_cache):
    outcome = _run(registry, pair_data, tmp_path, shared_cache, "no-engine")
    assert not outcome.ok
    assert outcome.record["error"]["type"] == "NoPrivateStepError"
    assert "ctx.private_trainer" in outcome.record["error"]["message"]


def test_every_released_gradient_is_counted_and_the_plan_is_a_hard_limit(registry, pair_data, tmp_path, shared_cache):
    outcome = _run(registry, pair_data, tmp_path, shared_cache, "gradient-loop")
    assert not outcome.ok
    assert "planned number of DP steps is spent" in outcome.record["error"]["message"]


def test_two_stages_compose_within_the_target(registry, pair_data, tmp_path, shared_cache):
    outcome = _run(registry, pair_data, tmp_path, shared_cache, "two-stages", epsilon=2.0)
    assert outcome.ok, outcome.record.get("error")
    privacy = outcome.record["privacy"]
    stages = privacy["stages"]
    assert [s["budget_share"] for s in stages] == [0.5, 0.5] and privacy["steps"] == 10
    history = [(s["noise_multiplier"], s["sample_rate"], s["steps"]) for s in stages]
    composed = epsilon_of_history(history, 1e-5, "rdp")
    assert composed == pytest.approx(privacy["epsilon"]) and composed <= 2.0
    # the first stage alone was calibrated to half the budget
    assert epsilon_of_history(history[:1], 1e-5, "rdp") <= 1.0


def test_budget_shares_over_one_fail(registry, pair_data, tmp_path, shared_cache):
    outcome = _run(registry, pair_data, tmp_path, shared_cache, "over-shares")
    assert not outcome.ok and "add up to" in outcome.record["error"]["message"]


def test_a_public_only_method_gets_no_private_data(registry, pair_data, tmp_path, shared_cache):
    outcome = _run(registry, pair_data, tmp_path, shared_cache, "public-trier", epsilon=0)
    assert not outcome.ok
    assert outcome.record["error"]["type"] == "PermissionError"
    assert "holds no private data" in outcome.record["error"]["message"]


def _zero_gradient_trainer(make_batch, seed=0):
    """An engine whose per-example gradients are all zero, so its released gradient is its noise alone."""
    images = torch.randint(0, 256, (200, 1, 4, 4), dtype=torch.uint8)
    books = PrivacyBooks(dpbench.ImageSet(images, torch.zeros(200, dtype=torch.int64)), epsilon=1.0, delta=1e-5,
                         device=torch.device("cpu"), seed=seed)
    model = MeanModel((1, 4, 4))

    def zero_loss(model_fn, example):
        return 0.0 * model_fn(example["x"].unsqueeze(0)).sum()

    settings = dpbench.DPSettings(expected_batch_size=20, steps=3, max_grad_norm=1.0)
    return books.open(model, zero_loss, make_batch, settings, prepare=to_unit)


def test_the_method_cannot_reach_or_replay_the_noise():
    def reseeding_batch(examples, generator):
        generator.manual_seed(0)  # a plugin that reseeds the generator it is handed
        torch.rand(int(examples["x"].sum()) % 7 + 1, generator=generator)  # and draws data-dependently from it
        return examples

    plain = _zero_gradient_trainer(identity_batch)
    hostile = _zero_gradient_trainer(reseeding_batch)
    plain_noise = [plain._privatised_gradient()["mean"] for _ in range(3)]
    hostile_noise = [hostile._privatised_gradient()["mean"] for _ in range(3)]
    for a, b in zip(plain_noise, hostile_noise):
        assert torch.equal(a, b)  # the batch function's generator does not touch the noise
    assert not torch.equal(hostile_noise[0], hostile_noise[1])  # and the noise never repeats
    assert hostile.steps_done == 3 and hostile.spent().steps == 3


def test_noise_scale_is_sigma_times_c_over_the_expected_batch():
    trainer = _zero_gradient_trainer(identity_batch)
    draws = torch.cat([trainer._privatised_gradient()["mean"].flatten() for _ in range(3)])
    expected_std = trainer.plan.noise_multiplier * 1.0 / (trainer.plan.sample_rate * 200)
    assert draws.std().item() == pytest.approx(expected_std, rel=0.35)  # 48 draws: a loose but real check
    assert math.isfinite(trainer.plan.noise_multiplier) and trainer.plan.noise_multiplier > 0


def test_the_plan_and_the_private_examples_are_not_the_methods_to_change():
    trainer = _zero_gradient_trainer(identity_batch)
    for name in ("plan", "settings"):
        with pytest.raises(AttributeError):
            setattr(trainer, name, None)
    assert not hasattr(trainer, "_x") and not hasattr(trainer, "_y")
