"""Careless method plugins (issue 23, items 1-4) against the engine's self-test (privacy.self_test).

Each plugin breaks an assumption the sensitivity bound rests on. Measured through the real engine with noise off
and q = 1, contrib = ||sum(D ∪ {x}) - sum(D)|| / C must be <= 1 for DP; x is an outlier record. With the self-test
switched off (what main did before it) each plugin's contrib exceeds 1, or a buffer carries private statistics;
with it on, each is refused or runs with contrib <= 1 + 1e-6.
"""
import pytest
import torch
from torch import nn

import dpbench
from dpbench.privacy import engine as engine_module
from dpbench.privacy import self_test
from dpbench.privacy.books import PrivacyBooks
from dpbench.privacy.per_example import with_batched_form
from dpbench.privacy.self_test import EngineSelfTestError, EngineSelfTestWarning

torch.set_num_threads(1)

CLIP = 1.0
SHAPE = (1, 6, 6)
N = 16


def private_sets():
    """D (N dim images) and D ∪ {x}, x an all-white outlier appended last."""
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 64, (N, *SHAPE), dtype=torch.uint8, generator=generator)
    labels = torch.arange(N) % 2
    outlier = torch.full((1, *SHAPE), 255, dtype=torch.uint8)
    return (dpbench.ImageSet(images, labels),
            dpbench.ImageSet(torch.cat([images, outlier]), torch.cat([labels, torch.tensor([1])])))


def unit(images):
    return images.float() / 255


def plain_batch(examples, generator):
    return examples


def flipped(x):
    return x.flip(-1) * 0.5 + 0.25  # a second view, not equal to the first for a flat image


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.out = nn.Linear(36, 3)

    def forward(self, x):
        return self.out(x.flatten(1))


def _summed(out):
    return out.sum(1)


@with_batched_form(lambda model, batch: _summed(model(batch["x"])))
def plain_loss(model_fn, example):
    return model_fn(example["x"].unsqueeze(0)).sum()


# 1a. make_batch gives each example an extra augmented view as its own row
def extra_view_rows(examples, generator):
    return {"x": torch.cat([examples["x"], flipped(examples["x"])]), "y": torch.cat([examples["y"]] * 2)}


# 1b. the batched form returns one loss per row of a doubled batch (the per-example form averages the views)
@with_batched_form(lambda model, batch: _summed(model(torch.cat([batch["x"], flipped(batch["x"])]))))
def doubled_batch_loss(model_fn, example):
    x = example["x"].unsqueeze(0)
    return (model_fn(x).sum() + model_fn(flipped(x)).sum()) / 2


# 2a. the forward runs cat([x, flip(x)]) through the trainable layer
class CatFlip(Linear):
    def forward(self, x):
        rows = self.out(torch.cat([x, flipped(x)]).flatten(1))
        return rows[:len(x)] + rows[len(x):]


# 2b. the forward standardises over the whole batch
class BatchStandardised(Linear):
    def forward(self, x):
        return self.out(((x - x.mean()) / (x.std() + 1e-6)).flatten(1))


# 3. prepare standardises over the whole split
def dataset_standardised(images):
    x = images.float()
    return (x - x.mean()) / x.std()


# 4. a norm layer that keeps running statistics, under ghost
class InstanceNormTracked(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.norm = nn.InstanceNorm2d(2, track_running_stats=True)
        self.out = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        return self.out(self.norm(self.conv(x)).flatten(1))


CARELESS = {  # name: (model class, loss, make_batch, prepare)
    "extra view rows (1a)": (Linear, plain_loss, extra_view_rows, unit),
    "doubled-batch losses (1b)": (Linear, doubled_batch_loss, plain_batch, unit),
    "cat([x, flip(x)]) forward (2a)": (CatFlip, plain_loss, plain_batch, unit),
    "batch standardisation (2b)": (BatchStandardised, plain_loss, plain_batch, unit),
    "dataset-level prepare (3)": (Linear, plain_loss, plain_batch, dataset_standardised),
}


@pytest.fixture
def noise_off(monkeypatch):
    monkeypatch.setattr(engine_module, "add_gaussian_noise", lambda summed, *args, **kwargs: summed)


@pytest.fixture
def self_test_off(monkeypatch):
    monkeypatch.setattr(self_test, "_DISABLED_FOR_TESTS", True)


def open_engine(private, model_class, loss, make_batch, prepare, steps=1):
    torch.manual_seed(0)  # the same initial model for D and D ∪ {x}
    books = PrivacyBooks(private, epsilon=1.0, delta=1e-5, device=torch.device("cpu"), seed=0)
    settings = dpbench.DPSettings(expected_batch_size=len(private), steps=steps, max_grad_norm=CLIP,
                                  physical_batch_size=64)
    return books.open(model_class(), loss, make_batch, settings, prepare=prepare, num_classes=2)


def released_sum(trainer):
    """The released sum of clipped gradients at q = 1 (noise switched off by the `noise_off` fixture)."""
    assert trainer.plan.sample_rate == 1.0
    released = trainer._privatised_gradient()
    return torch.cat([g.flatten() for g in released.values()]) * trainer.n_private


def contrib(plugin):
    with_x, without_x = (released_sum(open_engine(private, *plugin)) for private in reversed(private_sets()))
    return float((with_x - without_x).norm()) / CLIP


def test_an_honest_plugin_keeps_ghost_and_stays_within_c(noise_off):
    trainer = open_engine(private_sets()[0], Linear, plain_loss, plain_batch, unit)
    assert trainer.plan.per_example == "ghost" and trainer.self_test.fallback is None
    assert contrib((Linear, plain_loss, plain_batch, unit)) <= 1 + 1e-6


@pytest.mark.parametrize("name", CARELESS)
def test_without_the_self_test_a_careless_plugin_breaks_the_bound(name, noise_off, self_test_off):
    assert contrib(CARELESS[name]) > 1.01


@pytest.mark.parametrize("name", CARELESS)
def test_a_careless_plugin_is_refused_or_stays_within_c(name, noise_off):
    try:
        measured = contrib(CARELESS[name])
    except EngineSelfTestError as refused:
        assert "Fix:" in str(refused) and refused.check in str(refused)
        return
    assert measured <= 1 + 1e-6


@pytest.mark.parametrize("name, check", [("extra view rows (1a)", "one row per example"),
                                         ("dataset-level prepare (3)", "prepare(x[i:j])")])
def test_what_no_implementation_makes_exact_is_refused_naming_the_function_and_check(name, check, noise_off):
    model, loss, make_batch, prepare = CARELESS[name]
    with pytest.raises(EngineSelfTestError) as refused:
        open_engine(private_sets()[0], model, loss, make_batch, prepare)
    named = make_batch if "1a" in name else prepare
    assert check in str(refused.value) and f"{named.__module__}.{named.__qualname__}" in str(refused.value)


@pytest.mark.parametrize("name", ["doubled-batch losses (1b)", "cat([x, flip(x)]) forward (2a)",
                                  "batch standardisation (2b)"])
def test_rows_ghost_would_get_wrong_fall_back_to_vmap_with_a_warning(name):
    with pytest.warns(EngineSelfTestWarning, match="uses vmap instead of 'ghost'"):
        trainer = open_engine(private_sets()[0], *CARELESS[name])
    assert trainer.plan.per_example == "vmap" and trainer.self_test.fallback


def test_without_the_self_test_a_tracked_instance_norm_releases_private_statistics(self_test_off):
    trainer = open_engine(private_sets()[0], InstanceNormTracked, plain_loss, plain_batch, unit, steps=3)
    assert trainer.plan.per_example == "ghost"
    before = trainer.model.norm.running_mean.clone()
    for _ in range(3):
        trainer.step(torch.optim.SGD(trainer.trainable.values(), lr=0.1))
    assert not torch.equal(trainer.model.norm.running_mean, before)  # private batch statistics, no noise


def test_a_tracked_instance_norm_is_refused_and_its_buffers_left_as_they_were():
    model_holder = {}

    def build():
        model_holder["model"] = InstanceNormTracked()
        return model_holder["model"]

    with pytest.raises(EngineSelfTestError, match="changes no buffer") as refused:
        open_engine(private_sets()[0], build, plain_loss, plain_batch, unit)
    assert "track_running_stats=False" in str(refused.value)
    norm = model_holder["model"].norm
    assert torch.equal(norm.running_mean, torch.zeros(2)) and int(norm.num_batches_tracked) == 0


def test_the_self_test_sees_synthetic_images_only_and_leaves_the_random_state_alone():
    seen = []

    def recording(images):
        seen.append(images.clone())
        return unit(images)

    private = private_sets()[0]
    torch.manual_seed(11)
    state = torch.get_rng_state()
    open_engine(private, Linear, plain_loss, plain_batch, recording)
    synthetic = seen[:-1]  # the last call is the engine preparing the private split
    assert synthetic and all(len(s) < len(private) for s in synthetic)
    assert all(not (s.unsqueeze(1) == private.images.unsqueeze(0)).flatten(2).all(2).any() for s in synthetic)
    assert torch.equal(seen[-1], private.images)
    torch.manual_seed(11)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.slow  # vmap over four scopes' U-Nets, twice
@pytest.mark.parametrize("k", [1, 3])
def test_the_harness_diffusion_loss_passes_the_self_test_on_every_scope_and_keeps_ghost(k):
    from dpbench.finetune.diffusion_finetune import diffusion_batch_maker
    from dpbench.models.diffusion import DiffusionSchedule, to_model_range
    from tests.test_per_example import LOSS, SCOPES, _unet

    make_batch = diffusion_batch_maker(DiffusionSchedule(), k, 0.25, 3)
    for scope in SCOPES:
        report = self_test.self_test(_unet(scope), LOSS, make_batch, to_model_range, "ghost", image_shape=(1, 8, 8),
                                     num_classes=3, device=torch.device("cpu"))
        assert report.implementation == "ghost" and report.fallback is None, (scope, report)
        assert "ghost equals vmap" in report.checks and "no buffer written" in report.checks


def test_the_harness_classifier_loss_passes_the_self_test():
    from dpbench.finetune.classifier import classifier_example_loss, pass_through
    from dpbench.models.classifiers import build_classifier
    from dpbench.models.diffusion import to_model_range

    torch.manual_seed(0)
    model = build_classifier("cnn", 1, 28, 10)
    report = self_test.self_test(model, classifier_example_loss, pass_through, to_model_range, "ghost",
                                 image_shape=(1, 28, 28), num_classes=10, device=torch.device("cpu"))
    assert report.implementation == "ghost" and report.fallback is None, report


class WithDropout(Linear):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.out(self.drop(x.flatten(1)))


def test_dropout_mixes_no_rows_so_ghost_stays_and_the_model_is_left_in_training_mode():
    model = WithDropout()
    report = self_test.self_test(model, plain_loss, plain_batch, unit, "ghost", image_shape=SHAPE, num_classes=2,
                                 device=torch.device("cpu"))
    assert report.implementation == "ghost" and report.fallback is None
    assert model.drop.training
