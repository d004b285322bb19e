"""Every cell draws its own DP noise and Poisson sampling masks: the ε = 5 and ε = 10 cells of one seed share
neither (from g + σ₁Cz and g + σ₂Cz with one z, g could be solved for), and the same cell run twice draws the
same ones (a seeded run is reproducible)."""
import pytest
import torch
from torch import nn

from dpbench.api.registry import load_registry
from dpbench.privacy.distributed import SINGLE
from dpbench.privacy.engine import DPSettings
from dpbench.run.prepare import PreparedRun, plan_run
from dpbench.run.progress import SilentProgress
from dpbench.run.runner import RunRequest, _method_context

STEPS = 3
pytestmark = pytest.mark.slow  # four cells planned and four engines calibrated (σ by Opacus) and self-tested


class _Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(28 * 28))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


def _draws(registry, data, epsilon: float, seed: int, tmp_path, shared_cache):
    """The cell's config hash, each step's noise in units of σC, and each step's sampled examples."""
    request = RunRequest(method="dp-sgd", pair="digits-mnist", epsilon=epsilon, seed=seed, out=tmp_path / "runs",
                         cache_dir=shared_cache)
    run = PreparedRun(**vars(plan_run(registry, request, data)))
    ctx, _ = _method_context(registry, run, SINGLE, torch.device("cpu"), SilentProgress())
    sampled: list[torch.Tensor] = []

    def make_batch(examples, generator):
        sampled.append(examples["x"].clone())  # the step's Poisson batch: which private images it holds
        return examples

    def zero_loss(model_fn, example):  # no gradient from the data: the released gradient is the noise alone
        return 0.0 * model_fn(example["x"]).sum()

    settings = DPSettings(expected_batch_size=64, steps=STEPS, max_grad_norm=1.0)
    trainer = ctx.private_trainer(_Scale(), zero_loss, make_batch, settings, prepare=lambda x: x.flatten(1).float())
    scale = trainer.noise_multiplier * settings.max_grad_norm / settings.expected_batch_size
    noise = [trainer._privatised_gradient()["weight"] / scale for _ in range(STEPS)]
    return run.config_hash, noise, sampled


def _same_batches(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def cells(tmp_path_factory, shared_cache):
    registry = load_registry()
    data = registry.pair("digits-mnist").load(None)
    root = tmp_path_factory.mktemp("cells")
    return {(eps, seed, attempt): _draws(registry, data, eps, seed, root / f"{eps}-{seed}-{attempt}", shared_cache)
            for eps, seed, attempt in [(5.0, 0, 0), (10.0, 0, 0), (10.0, 0, 1), (10.0, 1, 0)]}


def test_two_epsilons_of_one_seed_draw_different_noise_and_masks(cells):
    hash5, noise5, masks5 = cells[(5.0, 0, 0)]
    hash10, noise10, masks10 = cells[(10.0, 0, 0)]
    assert hash5 == hash10  # ε is not in the config hash: the cell key must carry it itself
    for z5, z10 in zip(noise5, noise10):
        assert not torch.allclose(z5, z10)  # with a shared stream these were equal, up to float rounding
    assert not _same_batches(masks5, masks10)
    assert all(0 < len(batch) < 4000 for batch in masks5 + masks10)  # real Poisson batches, not all or nothing


def test_two_seeds_of_one_epsilon_draw_different_noise_and_masks(cells):
    _, noise_a, masks_a = cells[(10.0, 0, 0)]
    _, noise_b, masks_b = cells[(10.0, 1, 0)]
    assert not torch.allclose(noise_a[0], noise_b[0])
    assert not _same_batches(masks_a, masks_b)


def test_the_same_cell_twice_draws_the_same_noise_and_masks(cells):
    _, noise_a, masks_a = cells[(10.0, 0, 0)]
    _, noise_b, masks_b = cells[(10.0, 0, 1)]
    assert all(torch.equal(a, b) for a, b in zip(noise_a, noise_b))
    assert _same_batches(masks_a, masks_b)
