"""Data-parallel DP training (torchrun): 2 gloo processes on the CPU spend the same ε and ledger as 1, sum the same
clipped gradients, add the noise sigma*C once (not sqrt(N) times), keep identical replicas, and only rank 0 writes."""
import contextlib
import functools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from dpbench.api.registry import load_registry
from dpbench.builtins.pair_digits_mnist import load_digits_mnist
from dpbench.cli import main
from dpbench.privacy import engine
from dpbench.privacy.accountant import validate_ledger
from dpbench.privacy.audit import AuditSettings
from dpbench.privacy.books import PrivacyBooks
from dpbench.privacy.distributed import SINGLE, World, current_world
from dpbench.privacy.engine import DPSettings
from dpbench.run.launch import request_arguments, torchrun_command
from dpbench.run.progress import SilentProgress
from dpbench.run.runner import RunInputError, RunRequest, execute

WORLD, EPSILON, DELTA, CLIP = 2, 1.0, 1e-5, 1.0
# indices whose clipped gradients are summed by both layouts; 7 gets a huge input, so its gradient is clipped
FIXED = torch.tensor([0, 3, 7, 8, 11, 14, 21, 30, 33, 42, 55, 64, 77, 90, 101, 144])
NOISE_STEPS = 20  # x 7,850 coordinates: the std of the released noise is known to about 0.2%


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def _cross_entropy(model_fn, ex):
    return F.cross_entropy(model_fn(ex["x"].unsqueeze(0)), ex["y"].unsqueeze(0))


def _no_gradient(model_fn, ex):
    return 0.0 * model_fn(ex["x"].unsqueeze(0)).sum()


@functools.cache
def _private_split():
    return load_digits_mnist().private_train


def _books(world: World, epsilon: float = EPSILON) -> PrivacyBooks:
    return PrivacyBooks(_private_split(), epsilon=epsilon, delta=DELTA, device=torch.device("cpu"), seed=0, world=world)


def _open(books: PrivacyBooks, loss, steps: int):
    torch.manual_seed(0)  # the same initial model; ranks > 0 are overwritten with rank 0's anyway
    model = _Linear()
    images = lambda x: x.flatten(1).float() / 255  # noqa: E731
    prepare = lambda x: torch.cat([images(x[:7]), 1e4 * images(x[7:8]), images(x[8:])])  # noqa: E731
    settings = DPSettings(expected_batch_size=256, steps=steps, max_grad_norm=CLIP)
    return books.open(model, loss, lambda examples, generator: examples, settings, prepare=prepare)


def _train(world: World, epsilon: float = EPSILON) -> dict:
    books = _books(world, epsilon)
    trainer = _open(books, _cross_entropy, steps=8)
    trainer.run(torch.optim.SGD(list(trainer.trainable.values()), lr=0.5))
    ledger = books.ledger("rdp")
    return {"ledger": ledger.to_dict(), "epsilon": validate_ledger(ledger, epsilon_target=epsilon, delta=DELTA,
                                                                  n_private=books.n_private),
            "batch_sizes": trainer.batch_sizes, "params": {n: p.detach().clone() for n, p in trainer.trainable.items()}}


@contextlib.contextmanager
def _noise_off():
    original = engine.add_gaussian_noise
    engine.add_gaussian_noise = lambda summed, *args, **kwargs: summed
    try:
        yield
    finally:
        engine.add_gaussian_noise = original


def _fixed_step(world: World) -> dict:
    """One engine step over FIXED (each rank its shard of it), noise off: the released sum of clipped grads."""
    trainer = _open(_books(world), _cross_entropy, steps=1)
    own = FIXED[FIXED % world.size == world.rank]
    trainer._sample_indices = lambda: own
    with _noise_off():
        released = trainer._privatised_gradient()
    scale = trainer.plan.sample_rate * trainer.n_private
    return {"sum": {n: g * scale for n, g in released.items()}, "local": trainer._clipped_sum(own)[0],
            "batch_sizes": trainer.batch_sizes}


def _released_noise(world: World) -> dict:
    """The released sums of NOISE_STEPS steps whose gradients are all zero: pure noise."""
    trainer = _open(_books(world), _no_gradient, steps=NOISE_STEPS)
    scale = trainer.plan.sample_rate * trainer.n_private
    noise = [torch.cat([g.reshape(-1) for g in trainer._privatised_gradient().values()]) * scale
             for _ in range(NOISE_STEPS)]
    return {"noise": torch.stack(noise), "std": trainer.plan.noise_multiplier * CLIP}


def _sampled_shards(world: World, draws: int = 200) -> list[torch.Tensor]:
    trainer = _open(_books(world), _cross_entropy, steps=1)
    return [trainer._sample_indices() for _ in range(draws)]


def _worker(rank: int, size: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    try:
        world = current_world()
        result = {"train": _train(world), "non_private": _train(world, math.inf), "fixed": _fixed_step(world), "noise": _released_noise(world),
                  "shards": _sampled_shards(world)}
        # the bug this design avoids: every rank adds its own noise and the noisy sums are all-reduced
        original = World.drawn_once
        World.drawn_once = lambda self, draw, like: self.sum(draw())
        try:
            result["noise_on_every_rank"] = _released_noise(world)
        finally:
            World.drawn_once = original
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("gloo")
    mp.spawn(_worker, args=(WORLD, str(folder / "store"), str(folder)), nprocs=WORLD, join=True)
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope="module")
def single() -> dict:
    return _train(SINGLE)


@pytest.mark.slow  # two gloo processes spawned (the `ranks` fixture)
def test_two_processes_spend_the_same_epsilon_and_ledger_as_one(ranks, single):
    for rank in ranks:
        assert rank["train"]["ledger"] == single["ledger"]
        assert rank["train"]["epsilon"] == single["epsilon"] <= EPSILON
    # the batch sizes are the world's: every rank records the same global count
    assert ranks[0]["train"]["batch_sizes"] == ranks[1]["train"]["batch_sizes"]


@pytest.mark.slow  # two gloo processes spawned (the `ranks` fixture)
def test_the_replicas_stay_identical(ranks, single):
    for run in ("train", "non_private"):  # noised by rank 0, and at ε = inf summed without noise
        first, second = (r[run]["params"] for r in ranks)
        assert all(torch.equal(first[n], second[n]) for n in first), run
    first = ranks[0]["train"]["params"]
    assert not all(torch.equal(first[n], single["params"][n]) for n in first)  # not one process's model: own samples


@pytest.mark.slow  # two gloo processes spawned (the `ranks` fixture)
def test_the_world_sum_of_clipped_gradients_equals_the_single_process_sum(ranks):
    single = _fixed_step(SINGLE)
    for rank in ranks:
        assert rank["fixed"]["batch_sizes"] == single["batch_sizes"] == [len(FIXED)]
        for name, expected in single["sum"].items():
            torch.testing.assert_close(rank["fixed"]["sum"][name], expected, rtol=1e-5, atol=1e-5)
    local = ranks[0]["fixed"]["local"]
    assert not torch.allclose(local["layer.weight"], single["sum"]["layer.weight"], atol=1e-3)  # a shard is not all
    total_norm = torch.cat([g.reshape(-1) for g in single["sum"].values()]).norm()
    assert total_norm <= len(FIXED) * CLIP * (1 + 1e-5)  # every example contributes at most C, the huge one too


def _std_is(values: torch.Tensor, std: float) -> bool:
    """The sample std of `values` is `std` within 5 standard errors (~1.3% for 157,000 values)."""
    standard_error = std / (2 * values.numel()) ** 0.5
    return abs(values.double().std().item() - std) < 5 * standard_error


@pytest.mark.slow  # two gloo processes spawned (the `ranks` fixture)
def test_the_noise_std_is_sigma_c_not_sqrt_n_sigma_c(ranks):
    released = [r["noise"]["noise"] for r in ranks]
    std = ranks[0]["noise"]["std"]
    assert torch.equal(released[0], released[1])  # drawn once, on rank 0, and broadcast
    assert _std_is(released[0], std)
    assert _std_is(_released_noise(SINGLE)["noise"], std)
    wrong = ranks[0]["noise_on_every_rank"]["noise"]
    assert not _std_is(wrong, std)  # the check would catch noise drawn on every rank
    print(f"\nreleased noise std / sigma*C: once over the world {released[0].std().item() / std:.4f}, "
          f"on every rank {wrong.std().item() / std:.4f}")


@pytest.mark.slow  # two gloo processes spawned (the `ranks` fixture)
def test_the_shards_poisson_sample_the_whole_split_at_rate_q(ranks):
    n, q = 4000, 256 / 4000
    draws = list(zip(*(r["shards"] for r in ranks)))
    for rank, shard in enumerate(ranks):
        assert all(bool((s % WORLD == rank).all()) for s in shard["shards"])
    assert all(not set(a.tolist()) & set(b.tolist()) for a, b in draws)
    sizes = torch.tensor([len(a) + len(b) for a, b in draws], dtype=torch.float64)
    mean, sd = n * q, (n * q * (1 - q)) ** 0.5  # a Poisson sample at q has Binomial(n, q) size
    assert abs(sizes.mean().item() - mean) < 4 * sd / len(sizes) ** 0.5
    assert abs(sizes.std().item() - sd) < 0.2 * sd
    hits = torch.zeros(n)
    for a, b in draws:
        hits[torch.cat([a, b])] += 1
    for shard in (hits[0::2], hits[1::2]):  # each example of each shard joins at rate q
        rate_sd = (q * (1 - q) / (len(draws) * len(shard))) ** 0.5
        assert abs(shard.mean().item() / len(draws) - q) < 5 * rate_sd


def test_nproc_relaunches_the_same_run_under_torchrun():
    request = RunRequest(method="m", pair="p", epsilon=math.inf, delta=3e-6, seed=4, out=Path("o"), data_root="d",
                         evaluators=["fid", "accuracy"], overrides={"a": "1", "b": 0.1, "c": True, "d": None},
                         rng="secure", allow_large_delta=True, nproc=2)
    argv = request_arguments(request)
    assert "--nproc" not in argv and torchrun_command(2, argv)[1:7] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "dpbench"]
    params = main.commands["run"].make_context("run", argv[1:]).params
    for key in ("method", "pair", "epsilon", "delta", "seed", "out", "data_root", "rng", "allow_large_delta",
                "checkpoint_every"):
        assert params[key] == getattr(request, key), key
    assert list(params["evaluators"]) == ["fid", "accuracy"] and params["nproc"] == 1 and params["as_json"]
    assert list(params["overrides"]) == ["a=1", "b=0.1", "c=true", "d=none"]


def test_nproc_refuses_resume_and_audit_before_launching(monkeypatch):
    monkeypatch.setattr("dpbench.run.launch.run_under_torchrun", lambda request: pytest.fail("launched"))
    result = CliRunner().invoke(main, ["run", "--method", "dp-loda", "--pair", "digits-mnist", "--eps", "1",
                                       "--nproc", "2", "--resume"])
    assert result.exit_code == 2 and "single-process" in result.output
    with pytest.raises(RunInputError, match="audit runs in one process"):
        execute(load_registry(), RunRequest(method="dp-loda", pair="digits-mnist", epsilon=1.0, nproc=2,
                                            audit=AuditSettings()), SilentProgress())


@pytest.mark.slow  # torchrun subprocess, two gloo ranks, a whole run
def test_torchrun_two_processes_write_one_record_with_the_single_process_epsilon(tmp_path, shared_cache):
    args = ["run", "--method", "dp-loda", "--pair", "digits-mnist", "--eps", "10", "--preset", "smoke",
            "--evaluator", "accuracy", "--set", "samples_per_class=10", "--cache-dir", str(shared_cache), "--json"]
    single = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "one")])
    assert single.exit_code == 0, single.output
    one = json.loads(single.stdout)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "dpbench", *args, "--out", str(tmp_path / "two"), "--nproc", "2"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads(done.stdout)  # one JSON document: rank 1 printed nothing
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert two["status"] == "completed" and two["privacy"]["epsilon"] == one["privacy"]["epsilon"] <= 10
    assert {k: v for k, v in two["privacy"].items()} == one["privacy"]
    assert two["config_hash"] == one["config_hash"]  # the world size is recorded, not hashed
    written = sorted(str(p.relative_to(tmp_path / "two")) for p in (tmp_path / "two").rglob("*") if p.is_file())
    folder = Path(two["pair"]["name"]) / "dp-loda" / f"smoke-{two['config_hash']}" / "eps10" / "seed0"
    assert written == [str(folder / name)
                       for name in ("curves.csv", "curves.png", "record.json", "samples.png", "synthetic.npz")]
