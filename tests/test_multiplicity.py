"""Noise multiplicity K: the K draws of one example are averaged before clipping, so its sensitivity stays C.

The check runs the engine's real step path (diffusion loss, batch format, clipping, chunking) on neighbouring
datasets with the noise turned off: the difference of the two summed gradients is exactly what the extra
example contributed, and it must have norm <= C. An implementation that repeats the batch K times and clips
each row would let the example contribute up to K*C; with K identical draws it contributes exactly K*C.
"""

import pytest
import torch

from dpbench.finetune.diffusion_finetune import diffusion_batch_maker, diffusion_example_loss
from dpbench.models.diffusion import DiffusionSchedule
from dpbench.models.unet import ClassConditionalUNet, UNetConfig
from dpbench.privacy import engine
from dpbench.privacy.engine import DPSettings, PrivateTrainer
from dpbench.privacy.per_example import IMPLEMENTATIONS
from dpbench.privacy.per_example.choice import EXAMPLES, ROWS, examples_per_chunk

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


def _signal_only_trainer(data: dict[str, torch.Tensor], k: int, physical: int, chunks: list[int],
                         implementation: str = "vmap", chunking: str = ROWS) -> PrivateTrainer:
    """An engine over len(data) private examples at sample rate 1, with its noise turned off.

    The engine's private "images" are the examples' indices, so make_batch can look up each example's fixed
    tensors: what the engine hands make_batch is exactly what it sampled.
    """
    n = len(data["x0"])

    def make_batch(examples, generator):
        chunks.append(len(examples["y"]))
        return {name: value[examples["x"]] for name, value in data.items()}

    settings = DPSettings(expected_batch_size=n, steps=1, max_grad_norm=C, noise_multiplicity=k,
                          physical_batch_size=physical, per_example=implementation, chunking=chunking)
    trainer = PrivateTrainer(_tiny_unet(), diffusion_example_loss(DiffusionSchedule()), make_batch, settings,
                             private_x=torch.arange(n), private_y=data["y"][:, 0], epsilon=10.0, delta=1e-5,
                             device=torch.device("cpu"), seed=0)
    assert trainer.plan.sample_rate == 1.0  # every example is in the batch
    assert trainer.plan.noise_multiplicity == k
    assert trainer.plan.per_example == implementation
    return trainer


@pytest.fixture(autouse=True)
def signal_only(monkeypatch):
    """Turn the engine's noise off, to look at the summed clipped signal alone."""
    monkeypatch.setattr(engine, "add_gaussian_noise", lambda summed, *args, **kwargs: summed)


def _summed_clipped_gradient(n: int, k: int, implementation: str, physical: int = 3,
                             chunking: str = ROWS) -> dict[str, torch.Tensor]:
    data = {name: value[:n] for name, value in _examples(8, k).items()}  # the first n of one fixed dataset
    chunks: list[int] = []
    trainer = _signal_only_trainer(data, k, physical, chunks, implementation, chunking)
    gradient = trainer._privatised_gradient()
    assert sum(chunks) == n == trainer.batch_sizes[0]
    # chunks of whole examples, each with its K draws (an example's draws are never split across chunks), as many
    # as the declared chunking says; the last chunk is short (3 + 3 + 2 for 8 examples at K = 1)
    per_chunk = examples_per_chunk(chunking, physical, k)
    assert max(chunks) == min(per_chunk, n) and len(chunks) == -(-n // per_chunk)
    return {name: g * n for name, g in gradient.items()}  # undo the division by the expected batch size


@pytest.mark.parametrize("chunking", [ROWS, EXAMPLES])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("k", [1, K])
def test_one_example_contributes_at_most_c_whatever_k(k, implementation, chunking):
    n = 5
    without = _summed_clipped_gradient(n, k, implementation, chunking=chunking)
    with_extra = _summed_clipped_gradient(n + 1, k, implementation, chunking=chunking)
    contribution = torch.cat([(with_extra[name] - without[name]).flatten() for name in without]).norm().item()
    assert contribution <= C * (1 + 1e-3)
    assert contribution >= 0.99 * C  # the example is clipped to exactly C, not silently dropped


def test_a_chunk_holds_whole_examples_rows_chunking_as_many_rows_as_at_k_1():
    assert examples_per_chunk(ROWS, 64, 1) == examples_per_chunk(EXAMPLES, 64, 1) == 64
    assert examples_per_chunk(ROWS, 64, 4) == 16  # 64 rows, as at K = 1
    assert examples_per_chunk(ROWS, 3, 4) == 1  # never less than one whole example
    assert examples_per_chunk(EXAMPLES, 64, 4) == 64  # 256 rows
    with pytest.raises(ValueError, match="chunking"):
        examples_per_chunk("draws", 64, 4)


def test_k_draws_are_averaged_inside_the_example():
    """With K identical draws, the per-example loss (and gradient) equals the single-draw one."""
    model = _tiny_unet()
    loss = diffusion_example_loss(DiffusionSchedule())
    one, four = _examples(1, 1), _examples(1, K)
    value_1 = loss(model, {name: v[0] for name, v in one.items()})
    value_k = loss(model, {name: v[0] for name, v in four.items()})
    assert value_k.item() == pytest.approx(value_1.item(), rel=1e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_the_tempting_implementation_would_fail_the_bound(implementation):
    """Repeating each example K times as K rows and clipping each row: the extra example adds K*C, not C."""
    def repeated(n):
        data = _examples(8, 1)
        rows = torch.arange(n).repeat_interleave(K)
        return {name: value[rows] for name, value in data.items()}

    def summed(n):
        data = repeated(n)
        trainer = _signal_only_trainer(data, 1, 64, [], implementation)  # one chunk: the K rows of an example clipped apart
        gradient = trainer._privatised_gradient()
        return {name: g * len(data["x0"]) for name, g in gradient.items()}

    without, with_extra = summed(5), summed(6)
    contribution = torch.cat([(with_extra[n] - without[n]).flatten() for n in without]).norm().item()
    assert contribution == pytest.approx(K * C, rel=1e-2)


def test_the_methods_batch_maker_draws_k_per_example_from_the_engines_examples():
    """diffusion_batch_maker: K (timestep, noise, label) draws per private example, the example's x0 once."""
    schedule = DiffusionSchedule()
    make_batch = diffusion_batch_maker(schedule, K, 0.25, null_class=3)
    x = torch.rand(1000, 1, 8, 8) * 2 - 1
    y = torch.arange(1000) % 3
    batch = make_batch({"x": x, "y": y}, torch.Generator().manual_seed(0))
    assert batch["x0"] is x
    assert batch["t"].shape == (1000, K) and batch["noise"].shape == (1000, K, 1, 8, 8) and batch["y"].shape == (1000, K)
    assert not torch.equal(batch["t"][:, 0], batch["t"][:, 1])  # the K draws differ
    kept = batch["y"] != 3
    assert torch.equal(batch["y"][kept], y.unsqueeze(1).expand(1000, K)[kept])  # labels kept or dropped, never changed
    assert 0.2 < (~kept).float().mean().item() < 0.3  # dropped to the null class with p_uncond
    again = make_batch({"x": x, "y": y}, torch.Generator().manual_seed(0))
    assert all(torch.equal(batch[name], again[name]) for name in batch)  # drawn from the engine's generator only
    # and the engine runs a real step with it: K draws per example, in the scope's chunks
    settings = DPSettings(expected_batch_size=4, steps=1, max_grad_norm=1.0, noise_multiplicity=K,
                          physical_batch_size=8)
    trainer = PrivateTrainer(_tiny_unet(), diffusion_example_loss(schedule), make_batch, settings, private_x=x[:8],
                             private_y=y[:8], epsilon=10.0, delta=1e-5, device=torch.device("cpu"), seed=0)
    gradient = trainer._privatised_gradient()
    assert set(gradient) == set(trainer.trainable) and all(torch.isfinite(g).all() for g in gradient.values())


def test_the_batch_maker_draws_timesteps_only_inside_the_window():
    schedule = DiffusionSchedule()
    x, y = torch.zeros(2000, 1, 4, 4), torch.arange(2000) % 3
    t = diffusion_batch_maker(schedule, K, 0.1, 3, min_timestep=600)({"x": x, "y": y}, torch.Generator())["t"]
    assert t.min().item() >= 600 and t.max().item() == schedule.num_steps - 1
    assert t.float().mean().item() == pytest.approx((600 + 999) / 2, abs=10)  # uniform on the window
    full = diffusion_batch_maker(schedule, K, 0.1, 3)({"x": x, "y": y}, torch.Generator())["t"]
    assert full.min().item() < 10
    for bad in (-1, schedule.num_steps):
        with pytest.raises(ValueError, match="min_timestep"):
            diffusion_batch_maker(schedule, K, 0.1, 3, min_timestep=bad)
