"""Routes around the privacy books through documented or public names (issue 23, items 9-11): each is closed.

A method must not reach the private splits through the pair or the registry it is handed, switch the engine's
clipping and noise off through its public attributes, or change the record's accountant and ε by mutating an
object it holds. Each test drives one such method through the real runner (or the engine) and checks that it is
refused, or that it changes nothing.
"""
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import dpbench
from dpbench.api.registry import load_registry, pair_view
from dpbench.privacy.books import PrivacyBooks
from dpbench.privacy.distributed import SINGLE
from tests.test_api_privacy import ConstantGenerator, MeanModel, _run, identity_batch, mse_loss, to_unit

torch.set_num_threads(1)


@dataclass(frozen=True)
class TinySettings:
    steps: int = dpbench.setting(3, "DP steps", minimum=1)
    samples_per_class: int = dpbench.setting(1, "samples per class", minimum=1)


class RouteMethod(dpbench.Method):
    description = "a method that tries a route around the books"
    Settings = TinySettings

    def settings(self, preset, pair):
        return TinySettings()

    def train(self, ctx, settings):
        model = MeanModel()
        dp = dpbench.DPSettings(expected_batch_size=32, steps=settings.steps, max_grad_norm=1.0)
        trainer = ctx.private_trainer(model, mse_loss, identity_batch, dp, prepare=to_unit)
        self.tamper(ctx, trainer, dp)
        trainer.run(torch.optim.SGD(model.parameters(), lr=1.0))
        return dpbench.MethodResult(ConstantGenerator(model), 784, 784)

    def tamper(self, ctx, trainer, dp):
        pass


class SwitchesDPOff(RouteMethod):
    name = "switches-dp-off"

    def tamper(self, ctx, trainer, dp):
        trainer.private = False


class ReplacesWorld(RouteMethod):
    name = "replaces-world"

    def tamper(self, ctx, trainer, dp):
        class NoNoise(type(SINGLE)):
            def drawn_once(self, draw, like):
                return like
        trainer.world = NoNoise()


class MutatesSettings(RouteMethod):
    """Changes the DPSettings it handed the engine, and the plan it reads back, through object.__setattr__."""

    name = "mutates-settings"

    def tamper(self, ctx, trainer, dp):
        object.__setattr__(dp, "accountant", "prv")
        object.__setattr__(dp, "steps", 1)
        object.__setattr__(trainer.settings, "accountant", "prv")
        object.__setattr__(trainer.plan, "noise_multiplier", 0.0)


class LoadsItsPair(RouteMethod):
    name = "loads-its-pair"

    def tamper(self, ctx, trainer, dp):
        ctx.pair.load(None)


class PublicOnlyLoadsItsPair(RouteMethod):
    name = "public-only-loads-its-pair"
    trains_on_private = False

    def train(self, ctx, settings):
        ctx.pair.load(None)
        raise AssertionError("unreachable")


class StashesThePairOfSettings(RouteMethod):
    name = "stashes-the-pair"

    def settings(self, preset, pair):
        self.stashed = pair
        return TinySettings()

    def tamper(self, ctx, trainer, dp):
        self.stashed.load(None)


class LoadsThroughTheRegistry(RouteMethod):
    name = "loads-through-the-registry"

    def validate(self, settings, registry):
        registry.pair("digits-mnist").load(None)


class RoutePlugin:
    @staticmethod
    @dpbench.hookimpl
    def dpbench_register_methods(register):
        for cls in (RouteMethod, SwitchesDPOff, ReplacesWorld, MutatesSettings, LoadsItsPair, PublicOnlyLoadsItsPair,
                    StashesThePairOfSettings, LoadsThroughTheRegistry):
            if cls is not RouteMethod:
                register(cls())


@pytest.fixture(scope="module")
def registry():
    return load_registry(extra_modules=[RoutePlugin])


@pytest.fixture(scope="module")
def pair_data(registry):
    return registry.pair("digits-mnist").load(None)  # the harness's own registry loads; plugins' views do not


@pytest.mark.parametrize("method", ["switches-dp-off", "replaces-world"])
def test_the_engines_privacy_flags_and_world_are_read_only(registry, pair_data, tmp_path, shared_cache, method):
    outcome = _run(registry, pair_data, tmp_path, shared_cache, method)
    assert not outcome.ok and outcome.record["status"] == "failed"
    assert outcome.record["error"]["type"] == "AttributeError"


def test_mutating_settings_or_plan_after_the_engine_exists_changes_nothing(registry, pair_data, tmp_path,
                                                                         shared_cache):
    outcome = _run(registry, pair_data, tmp_path, shared_cache, "mutates-settings")
    assert outcome.ok, outcome.record.get("error")
    privacy = outcome.record["privacy"]
    assert privacy["accountant"] == "rdp" and privacy["steps"] == 3
    assert privacy["stages"][0]["noise_multiplier"] > 0 and 0 < privacy["epsilon"] <= 1.0


@pytest.mark.parametrize("method, epsilon", [("loads-its-pair", 1.0), ("public-only-loads-its-pair", 0),
                                             ("stashes-the-pair", 1.0)])
def test_the_pair_a_method_sees_has_no_loader(registry, pair_data, tmp_path, shared_cache, method, epsilon):
    outcome = _run(registry, pair_data, tmp_path, shared_cache, method, epsilon)
    assert not outcome.ok
    assert outcome.record["error"]["type"] == "PermissionError"
    assert "cannot load pair 'digits-mnist'" in outcome.record["error"]["message"]


def test_the_registry_handed_to_validate_cannot_load_a_pair(registry, pair_data, tmp_path, shared_cache):
    with pytest.raises(PermissionError, match="cannot load pair 'digits-mnist'"):
        _run(registry, pair_data, tmp_path, shared_cache, "loads-through-the-registry")
    assert not list(tmp_path.rglob("record.json"))  # refused before anything ran


def test_a_pair_view_keeps_the_description_and_the_harness_keeps_its_loader(registry):
    spec = registry.pair("digits-mnist")
    view = registry.for_plugins().pair("digits-mnist")
    assert (view.name, view.image_size, view.channels, view.num_classes) == \
        (spec.name, spec.image_size, spec.channels, spec.num_classes)
    assert pair_view(view) is view and view.download is None
    with pytest.raises(PermissionError):
        view.load(None)
    assert registry.pair("digits-mnist").load is spec.load  # the harness's own registry is untouched
    registry.for_plugins().evaluators.clear()  # nor can plugin code change what the harness looks up
    assert registry.evaluators


def _engine():
    images = torch.randint(0, 256, (100, 1, 28, 28), dtype=torch.uint8)
    books = PrivacyBooks(dpbench.ImageSet(images, torch.zeros(100, dtype=torch.int64)), epsilon=1.0, delta=1e-5,
                         device=torch.device("cpu"), seed=0)
    settings = dpbench.DPSettings(expected_batch_size=10, steps=3, max_grad_norm=1.0)
    return books, books.open(MeanModel(), mse_loss, identity_batch, settings, prepare=to_unit), settings


def test_the_engine_checks_its_privacy_state_at_every_step():
    books, trainer, settings = _engine()
    trainer._privatised_gradient()
    for name in ("private", "world", "plan", "settings", "per_example"):
        with pytest.raises(AttributeError):
            setattr(trainer, name, None)
    object.__setattr__(settings, "accountant", "prv")  # the method's object, not the engine's
    object.__setattr__(trainer.plan, "noise_multiplier", 0.0)  # a copy
    assert trainer.settings.accountant == "rdp" and trainer.plan.noise_multiplier > 0
    assert books.ledger("prv").accountant == "rdp"
    trainer._privatised_gradient()
    object.__setattr__(trainer._PrivateTrainer__plan, "noise_multiplier", 0.0)  # only a private name reaches it
    with pytest.raises(RuntimeError, match="privacy state"):
        trainer._privatised_gradient()


def test_the_pair_an_evaluator_sees_has_no_loader(registry):
    from dpbench.api.context import EvalContext
    from dpbench.run.progress import SilentProgress

    spec = registry.pair("digits-mnist")
    ctx = EvalContext(pair=spec, public_train=None, private_test=None, artifact=None, produces="generator",
                      samples=None, sample_labels=None, seed=0, device=torch.device("cpu"), preset="smoke",
                      progress=SilentProgress(), cache_dir=Path("."))
    assert ctx.pair.name == spec.name
    with pytest.raises(PermissionError, match="cannot load pair 'digits-mnist'"):
        ctx.pair.load(None)
