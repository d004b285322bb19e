"""The copy check flags a generator that returns private training images and stays quiet on fresh images; the
scoring stage hands the private train split only to evaluators that declare they need it, records their figures
outside the guarantee, and withholds the grid of a flagged run."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from dpbench.api.context import EvalContext
from dpbench.api.types import Evaluator, Metric
from dpbench.builtins.pair_digits_mnist import load_digits_mnist
from dpbench.cli import main
from dpbench.eval import memorisation
from dpbench.eval.memorisation import copy_check, copy_verdict, mann_whitney_z, nearest_two
from dpbench.run.progress import SilentProgress
from dpbench.run.records import validate_record
from dpbench.run.scoring import add_scores, evaluate_all
from tests.conftest import install_fake_distribution


@pytest.fixture(scope="module")
def digits():
    return load_digits_mnist()


def _pick(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]]


def test_verbatim_private_training_images_are_flagged(digits):
    train, test = digits.private_train.images, digits.private_test.images
    check = copy_check(_pick(train, 500, 0), train, test, seed=0)
    assert check.train_fraction == 1.0 and check.test_fraction < 0.05
    assert check.ct < memorisation.CT_FLAG_BELOW and check.ct_cells >= 1
    assert check.flagged and "near-copies of a private training image" in check.reason and "C_T" in check.reason


@pytest.mark.parametrize("fresh", ["public", "noise", "test"])
def test_fresh_images_are_not_flagged(digits, fresh):
    """Public digits (another dataset), uniform noise, and held-out private test images, which the generator never
    saw: none is closer to the train split than fresh images are."""
    train, test = digits.private_train.images, digits.private_test.images
    if fresh == "public":
        samples = _pick(digits.public_train.images, 500, 1)
        reference_test = test
    elif fresh == "noise":
        samples = torch.randint(0, 256, (500, *train.shape[1:]), dtype=torch.uint8,
                                generator=torch.Generator().manual_seed(2))
        reference_test = test
    else:  # half of the test split as "samples", the other half as the baseline: exchangeable with train
        order = torch.randperm(len(test), generator=torch.Generator().manual_seed(3))
        samples, reference_test = test[order[:500]], test[order[500:]]
    check = copy_check(samples, train, reference_test, seed=0)
    assert not check.flagged, check.reason
    assert check.train_fraction - check.test_fraction < memorisation.EXCESS_FLAG_AT


def test_a_generator_that_copies_one_sample_in_ten_is_flagged(digits):
    """Partial memorisation: 10% verbatim training images among public digits."""
    train, test = digits.private_train.images, digits.private_test.images
    samples = torch.cat([_pick(train, 50, 4), _pick(digits.public_train.images, 450, 5)])
    check = copy_check(samples, train, test, seed=0)
    assert check.train_fraction >= 0.1 and check.flagged


@settings(max_examples=25, deadline=None)
@given(n_queries=st.integers(1, 40), n_reference=st.integers(2, 60), dim=st.integers(1, 8), seed=st.integers(0, 999),
       query_chunk=st.integers(1, 16), block_rows=st.integers(1, 16))
def test_chunked_nearest_two_matches_the_full_distance_matrix(n_queries, n_reference, dim, seed, query_chunk,
                                                              block_rows):
    generator = torch.Generator().manual_seed(seed)
    queries = torch.randint(0, 256, (n_queries, dim), generator=generator, dtype=torch.uint8)
    reference = torch.randint(0, 256, (n_reference, dim), generator=generator, dtype=torch.uint8)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(memorisation, "QUERY_CHUNK", query_chunk)
        patch.setattr(memorisation, "BLOCK_VALUES", block_rows * dim)
        d1, d2 = nearest_two(queries, reference)
    full = torch.cdist(queries.double() / 255, reference.double() / 255,
                       compute_mode="donot_use_mm_for_euclid_dist").sort(dim=1).values
    torch.testing.assert_close(d1, full[:, 0])
    torch.testing.assert_close(d2, full[:, 1])


def test_the_mann_whitney_z_is_negative_when_samples_sit_closer_and_matches_the_textbook_formula():
    rng = np.random.default_rng(0)
    closer, fresh = rng.uniform(0, 1, 300), rng.uniform(0.5, 1.5, 200)  # continuous: no ties
    u = sum((a > b) for a in closer for b in fresh)
    expected = (u - 300 * 200 / 2) / np.sqrt(300 * 200 * (300 + 200 + 1) / 12)
    assert mann_whitney_z(closer, fresh) == pytest.approx(expected, rel=1e-6) and expected < -10
    assert mann_whitney_z(fresh, closer) == pytest.approx(-expected, rel=1e-6)


@pytest.mark.parametrize("train, test, p, ct, flagged", [
    (0.20, 0.00, 1e-6, 1.0, True),  # a clear excess of near-copies of train
    (0.20, 0.00, 0.01, 1.0, False),  # an excess the McNemar test does not support
    (0.005, 0.0, 1e-9, 1.0, False),  # significant but under one point of the samples
    (0.0, 0.0, 1.0, -3.5, True),  # C_T strongly negative
    (0.0, 0.0, 1.0, -2.9, False),
    (0.0, 0.0, 1.0, float("nan"), False),  # no cell had enough samples
])
def test_the_documented_rule(train, test, p, ct, flagged):
    assert copy_verdict(train, test, p, ct)[0] is flagged


class _Spy(Evaluator):
    applies_to = ("generator",)

    def __init__(self, name, needs, metric, extra=None):
        self.name, self.needs_private_train, self.metric, self.extra, self.saw = name, needs, metric, extra or {}, None

    def evaluate(self, ctx):
        self.saw = ctx.private_train
        return [Metric(self.metric, 0.5, higher_is_better=True, extra=self.extra)]


def _eval_context(digits) -> EvalContext:
    return EvalContext(pair=None, public_train=digits.public_train, private_test=digits.private_test, artifact=None,
                       produces="generator", samples=None, sample_labels=None, seed=0, device=torch.device("cpu"),
                       preset="smoke", progress=SilentProgress(), cache_dir=Path("."),
                       private_train=digits.private_train)


def test_only_an_evaluator_that_declares_the_need_sees_private_train_and_its_figures_are_outside(digits):
    plain = _Spy("plain", False, "score")
    reader = _Spy("reader", True, "ceiling", extra={"withhold_grid": "copy check flagged: test"})
    scores = evaluate_all([plain, reader], _eval_context(digits), {})
    assert plain.saw is None and reader.saw is digits.private_train
    assert set(scores.metrics) == {"score"} and set(scores.outside_guarantee) == {"ceiling"}
    record = {"metrics": {}, "outside_guarantee": {"overlap": {}, "metrics": {}}}
    add_scores(record, scores)
    assert record["outside_guarantee"]["metrics"]["ceiling"]["evaluator"] == "reader"
    assert record["withheld"] == {"grid": "copy check flagged: test"}
    add_scores(record, evaluate_all([_Spy("reader", True, "ceiling")], _eval_context(digits), {}))
    assert "withheld" not in record  # re-scored and no longer flagged: nothing withheld


def test_two_evaluators_may_not_share_a_metric_name_across_the_sections(digits):
    with pytest.raises(ValueError, match="both report a metric named 'x'"):
        evaluate_all([_Spy("a", False, "x"), _Spy("b", True, "x")], _eval_context(digits), {})


MEMORISER_PLUGIN = '''
from dataclasses import dataclass

import torch

import dpbench


@dataclass(frozen=True)
class Settings:
    samples_per_class: int = dpbench.setting(10, "samples per class", minimum=1)


class Levels(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.level = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.level.expand(len(x))


def _loss(model_fn, example):
    return (model_fn(example["x"].unsqueeze(0))[0] - example["x"].mean()) ** 2


class Stash:
    """The artifact: it returns, as its "samples", the private examples its batch function was handed."""

    def __init__(self):
        self.images = []

    def __call__(self, examples, generator):
        self.images.append(examples["x"].round().clamp(0, 255).to(torch.uint8).cpu())
        return examples

    def sample(self, labels, seed, progress=None):
        seen = torch.cat(self.images)
        return seen[-len(labels):] if len(seen) >= len(labels) else seen[torch.arange(len(labels)) % len(seen)]


class Memoriser(dpbench.Method):
    name = "memoriser"
    produces = "generator"
    Settings = Settings

    def settings(self, preset, pair):
        return Settings()

    def train(self, ctx, settings):
        model, stash = Levels(), Stash()
        dp = dpbench.DPSettings(expected_batch_size=64, steps=4, max_grad_norm=1.0)
        trainer = ctx.private_trainer(model, _loss, stash, dp, prepare=lambda images: images.float())
        trainer.run(torch.optim.SGD(model.parameters(), lr=0.1))
        return dpbench.MethodResult(artifact=stash, trainable_parameters=1, total_parameters=1)


@dpbench.hookimpl
def dpbench_register_methods(register):
    register(Memoriser())
'''


@pytest.mark.slow
def test_a_run_whose_generator_returns_private_training_images_is_flagged_and_its_grid_withheld(
        plugin_path, tmp_path, shared_cache):
    """Issue 23 item 12: a method hands back the private examples its batch function saw. The run still completes
    (the copy check scores, it does not refuse), but its record flags the copies outside the guarantee and
    withholds the grid with the reason."""
    install_fake_distribution(plugin_path, "dpbench-memoriser", "0.1.0", {"memoriser": "thirdparty_memoriser"},
                              {"thirdparty_memoriser": MEMORISER_PLUGIN})
    result = CliRunner().invoke(main, ["run", "--method", "memoriser", "--pair", "digits-mnist", "--eps", "1",
                                       "--preset", "smoke", "--evaluator", "memorisation", "--out",
                                       str(tmp_path / "runs"), "--cache-dir", str(shared_cache), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    outside = record["outside_guarantee"]["metrics"]
    assert outside["copies_flagged"]["value"] == 1 and outside["copies_train_fraction"]["value"] == 1.0
    assert outside["copies_test_fraction"]["value"] < 0.05 and outside["copies_ct"]["value"] < -3
    assert not {"copies_flagged", "copies_train_fraction"} & set(record["metrics"])
    assert record["withheld"]["grid"].startswith("copy check flagged: 100.0% of the samples")
    [path] = (tmp_path / "runs").rglob("record.json")
    validate_record(json.loads(path.read_text()))


@pytest.mark.slow
def test_a_run_of_fresh_random_images_is_not_flagged(mock_method, tmp_path, shared_cache):
    result = CliRunner().invoke(main, ["run", "--method", mock_method, "--pair", "digits-mnist", "--eps", "1",
                                       "--preset", "smoke", "--set", "samples_per_class=50", "--evaluator",
                                       "memorisation", "--out", str(tmp_path / "runs"), "--cache-dir",
                                       str(shared_cache), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["outside_guarantee"]["metrics"]["copies_flagged"]["value"] == 0
    assert "withheld" not in record

