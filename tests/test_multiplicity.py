"""Noise multiplicity K: the K draws of one example are averaged before clipping, so its sensitivity stays C.

The check runs the engine's real step path (diffusion loss, batch format, clipping, chunking) on neighbouring
datasets with the noise turned off: the difference of the two summed gradients is exactly what the extra
example contributed, and it must have norm <= C. An implementation that repeats the batch K times and clips
each row would let the example contribute up to K*C; with K identical draws it contributes exactly K*C.
"""
import dataclasses

import pytest
import torch

from dpbench.finetune import diffusion_example_loss
from dpbench.models.diffusion import DiffusionSchedule
from dpbench.models.unet import ClassConditionalUNet, UNetConfig
from dpbench.privacy.engine import DPConfig, DPSGDEngine

torch.set_num_threads(2)
K = 4
C = 1e-3  # far below the per-draw gradient norm, so clipping is always active


def _tiny_unet():
    torch.manual_seed(0)
    return ClassConditionalUNet(UNetConfig.for_images(8, 1, 3, base_channels=8, groups=4))


def _examples(n: int, k: int, seed: int = 0):
    """Per-example tensors fixed by the example's index (not by the engine's generator), identical K draws each."""
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, 1, 8, 8, generator=gen) * 2 - 1
    t = torch.randint(0, 1000, (n, 1), generator=gen).expand(n, k).contiguous()
    noise = torch.randn(n, 1, 1, 8, 8, generator=gen).expand(n, k, 1, 8, 8).contiguous()
    y = (torch.arange(n) % 3).unsqueeze(1).expand(n, k).contiguous()
    return {"x0": x0, "t": t, "noise": noise, "y": y}


def _summed_clipped_gradient(n: int, k: int, physical: int = 64) -> dict[str, torch.Tensor]:
    model = _tiny_unet()
    data = {name: value[:n] for name, value in _examples(8, k).items()}  # the first n of one fixed dataset
    config = DPConfig(epsilon=10.0, delta=1e-5, expected_batch_size=n, steps=1, max_grad_norm=C,
                      noise_multiplicity=k, physical_batch_size=physical)
    engine = DPSGDEngine(model, diffusion_example_loss(DiffusionSchedule()), config, n, torch.device("cpu"), seed=0)
    assert engine.ledger.sample_rate == 1.0  # every example is in the batch
    engine.ledger = dataclasses.replace(engine.ledger, noise_multiplier=0.0)  # look at the signal alone
    chunks = []

    def make_batch(indices, generator):
        chunks.append(len(indices))
        return {name: value[indices] for name, value in data.items()}

    gradient = engine.noisy_gradient(make_batch)
    assert max(chunks) <= max(1, physical // k)  # memory stays flat in K: chunks shrink K-fold
    return {name: g * n for name, g in gradient.items()}  # undo the division by the expected batch size


@pytest.mark.parametrize("k", [1, K])
def test_one_example_contributes_at_most_c_whatever_k(k):
    n = 5
    without = _summed_clipped_gradient(n, k)
    with_extra = _summed_clipped_gradient(n + 1, k)
    contribution = torch.cat([(with_extra[name] - without[name]).flatten() for name in without]).norm().item()
    assert contribution <= C * (1 + 1e-3)
    assert contribution >= 0.99 * C  # the example is clipped to exactly C, not silently dropped


def test_k_draws_are_averaged_inside_the_example():
    """With K identical draws, the per-example loss (and gradient) equals the single-draw one."""
    model = _tiny_unet()
    loss = diffusion_example_loss(DiffusionSchedule())
    one, four = _examples(1, 1), _examples(1, K)
    value_1 = loss(model, {name: v[0] for name, v in one.items()})
    value_k = loss(model, {name: v[0] for name, v in four.items()})
    assert value_k.item() == pytest.approx(value_1.item(), rel=1e-5)


def test_the_tempting_implementation_would_fail_the_bound():
    """Repeating each example K times as K rows and clipping each row: the extra example adds K*C, not C."""
    def repeated(n):
        data = _examples(8, 1)
        rows = torch.arange(n).repeat_interleave(K)
        return {name: value[rows] for name, value in data.items()}

    def summed(n):
        model = _tiny_unet()
        data = repeated(n)
        config = DPConfig(10.0, 1e-5, len(data["x0"]), 1, C, physical_batch_size=64)
        engine = DPSGDEngine(model, diffusion_example_loss(DiffusionSchedule()), config, len(data["x0"]),
                             torch.device("cpu"), seed=0)
        engine.ledger = dataclasses.replace(engine.ledger, noise_multiplier=0.0)
        gradient = engine.noisy_gradient(lambda idx, gen: {name: v[idx] for name, v in data.items()})
        return {name: g * len(data["x0"]) for name, g in gradient.items()}

    without, with_extra = summed(5), summed(6)
    contribution = torch.cat([(with_extra[n] - without[n]).flatten() for n in without]).norm().item()
    assert contribution == pytest.approx(K * C, rel=1e-2)
