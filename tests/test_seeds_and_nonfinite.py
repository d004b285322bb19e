"""Seed streams are independent across seeds and cells; a non-finite per-example gradient stays bounded and is counted."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dpbench.privacy.engine import DPSettings, PrivateTrainer
from dpbench.privacy.per_example import base as clipping
from dpbench.privacy.per_example import IMPLEMENTATIONS, with_batched_form
from dpbench.seeds import cell_seed, stream_seed

STREAMS = [("dp", 0, "noise"), ("dp", 0, "sampling"), ("dp", 0, "batch"), ("dp", 1, "noise"), ("method",),
           ("images",), ("evaluation",)]


def test_seeds_s_and_s_plus_1_share_no_stream():
    seeds = {(s, path): stream_seed(s, *path) for s in range(50) for path in STREAMS}
    assert len(set(seeds.values())) == len(seeds)  # the old scheme (noise = s, sampling = s + 1) collides here
    assert stream_seed(3, "dp", 0, "noise") == stream_seed(3, "dp", 0, "noise")  # and they are reproducible


@settings(max_examples=200, deadline=None)
@given(a=st.tuples(st.integers(0, 4), st.sampled_from(["1", "5", "10", "inf"]), st.text("0123456789abcdef", min_size=10,
                                                                                       max_size=10)),
       b=st.tuples(st.integers(0, 4), st.sampled_from(["1", "5", "10", "inf"]), st.text("0123456789abcdef", min_size=10,
                                                                                       max_size=10)))
def test_cells_that_differ_in_seed_epsilon_or_config_share_no_stream(a, b):
    streams = [("dp", 0, "noise"), ("dp", 0, "sampling"), ("dp", 0, "batch"), ("method",)]
    drawn_a = {stream_seed(cell_seed(*a), *path) for path in streams}
    drawn_b = {stream_seed(cell_seed(*b), *path) for path in streams}
    assert len(drawn_a) == len(streams)
    assert (drawn_a == drawn_b) if a == b else not (drawn_a & drawn_b)


def test_a_cell_key_without_an_epsilon_or_config_hash_is_refused():
    for epsilon, config_hash in (("", "abc"), ("10", ""), (10.0, "abc"), ("10", None)):
        with pytest.raises(ValueError, match="cell"):
            cell_seed(0, epsilon, config_hash)


def test_a_bad_run_seed_is_refused():
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="seed"):
            stream_seed(bad, "noise")


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(2, 6), bad_row=st.integers(0, 5), kind=st.sampled_from([math.nan, math.inf, -math.inf]),
       clip=st.floats(0.01, 5.0), seed=st.integers(0, 2**16))
def test_a_nonfinite_example_is_zeroed_and_the_sum_stays_bounded(batch, bad_row, kind, clip, seed):
    bad_row %= batch
    gen = torch.Generator().manual_seed(seed)
    grads = {"w": 10 * torch.randn(batch, 4, 3, generator=gen), "b": torch.randn(batch, 3, generator=gen)}
    grads["w"][bad_row, 1, 2] = kind
    bad = clipping.clip_and_sum(grads, clip).nonfinite  # the mask the engine's clipping path reports
    assert bad.tolist() == [i == bad_row for i in range(batch)]
    result = clipping.clip_and_sum(grads, clip)
    summed, norms = result.summed, result.norms
    flat = torch.cat([g.flatten() for g in summed.values()])
    assert torch.isfinite(flat).all()
    assert flat.norm().item() <= (batch - 1) * clip * (1 + 1e-5)  # the bad example adds nothing, the rest <= C each
    assert norms[bad_row].item() == 0.0
    without = {k: torch.cat([v[:bad_row], v[bad_row + 1:]]) for k, v in grads.items()}
    expected = clipping.clip_and_sum(without, clip).summed
    for name in summed:
        assert torch.allclose(summed[name], expected[name], atol=1e-5)


class _Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


def test_the_engine_counts_nonfinite_examples_and_releases_a_finite_gradient():
    x = torch.ones(40, 3)
    x[7] = math.inf  # one hostile record
    trainer = PrivateTrainer(_Scale(), lambda model_fn, ex: model_fn(ex["x"]).sum(),
                             lambda examples, generator: examples,
                             DPSettings(expected_batch_size=40, steps=3, max_grad_norm=1.0),
                             private_x=x, private_y=torch.zeros(40, dtype=torch.long), epsilon=10.0, delta=1e-5,
                             device=torch.device("cpu"), seed=0)
    released = [trainer._privatised_gradient()["weight"] for _ in range(3)]
    assert all(torch.isfinite(g).all() for g in released)
    assert trainer.nonfinite_examples == 3  # sample rate 1: example 7 was in every step, zeroed each time


def _linear_batched_loss(model, batch):
    return model(batch["x"]).sum(1)


@with_batched_form(_linear_batched_loss)
def _linear_loss(model_fn, example):
    return model_fn(example["x"].unsqueeze(0)).sum()


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("kind", [math.nan, math.inf])
def test_every_implementation_counts_nonfinite_examples_and_releases_a_finite_gradient(implementation, kind):
    """Ghost clipping never materialises per-example gradients: it finds the bad example by its norm."""
    torch.manual_seed(0)
    x = torch.randn(40, 3)
    x[7, 1] = kind  # one hostile record
    trainer = PrivateTrainer(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)), _linear_loss,
                             lambda examples, generator: examples,
                             DPSettings(expected_batch_size=40, steps=3, max_grad_norm=1.0, per_example=implementation),
                             private_x=x, private_y=torch.zeros(40, dtype=torch.long), epsilon=10.0, delta=1e-5,
                             device=torch.device("cpu"), seed=0)
    released = [trainer._privatised_gradient() for _ in range(3)]
    assert all(torch.isfinite(g).all() for step in released for g in step.values())
    assert trainer.nonfinite_examples == 3
