"""The secure noise source: the right distribution, never reproducible, recorded as such; seeded runs are marked."""
import json

import pytest
import torch
from click.testing import CliRunner

from dpbench.cli import main
from dpbench.privacy.randomness import SecureRandomness, engine_randomness


def test_secure_normals_have_unit_std_and_uniforms_lie_in_the_unit_interval():
    source = SecureRandomness()
    normals = source.normal((400_000,), torch.device("cpu"), torch.float32)
    assert normals.std().item() == pytest.approx(1.0, rel=0.01) and abs(normals.mean().item()) < 0.01
    assert abs(((normals ** 4).mean() - 3).item()) < 0.1  # Gaussian kurtosis, not a uniform's
    uniforms = source.uniform(100_000)
    assert 0 <= uniforms.min().item() and uniforms.max().item() < 1
    assert (uniforms < 0.25).float().mean().item() == pytest.approx(0.25, abs=0.01)


def test_secure_and_os_seeded_draws_do_not_repeat_for_the_same_seed():
    for kind in ("secure", "os-seeded"):
        a = engine_randomness(kind, 0, 0, torch.device("cpu")).normal((64,), torch.device("cpu"), torch.float32)
        b = engine_randomness(kind, 0, 0, torch.device("cpu")).normal((64,), torch.device("cpu"), torch.float32)
        assert not torch.equal(a, b), kind
    a = engine_randomness("seeded", 0, 0, torch.device("cpu")).normal((64,), torch.device("cpu"), torch.float32)
    b = engine_randomness("seeded", 0, 0, torch.device("cpu")).normal((64,), torch.device("cpu"), torch.float32)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="rng"):
        engine_randomness("urandom", 0, 0, torch.device("cpu"))


@pytest.mark.slow  # a whole run; the full suite (.ci/run) keeps it
def test_a_secure_run_records_its_rng_and_the_leaderboard_marks_seeded_rows(tmp_path, shared_cache):
    from dpbench.report.leaderboard import render

    def run(*extra):
        result = CliRunner().invoke(main, ["run", "--method", "dp-sgd", "--pair", "digits-mnist", "--eps", "2",
                                           "--preset", "smoke", "--out", str(tmp_path), "--cache-dir",
                                           str(shared_cache), "--json", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    secure, seeded = run("--secure-rng"), run()
    assert secure["privacy"]["rng"] == "secure" and seeded["privacy"]["rng"] == "seeded (simulation)"
    assert secure["config_hash"] != seeded["config_hash"]  # separate leaderboard rows
    assert "seed" not in json.dumps(secure["privacy"])  # no key or noise seed is written
    page = render([secure, seeded])
    import re

    assert re.search(r"\| secure +\|", page) and re.search(r"\| seeded +\|", page)


class _Killed(Exception):
    pass


class _CountingSGD(torch.optim.SGD):
    """SGD that counts its updates and dies (like a SIGKILL after the noise was drawn) at update `die_at`."""

    def __init__(self, params, die_at=None):
        super().__init__(params, lr=0.1)
        self.updates, self.die_at = 0, die_at

    def step(self, closure=None):
        self.updates += 1
        if self.updates == self.die_at:
            raise _Killed
        return super().step(closure)


def _stage(tmp_path, rng, resume):
    import dpbench
    from dpbench.privacy.books import PrivacyBooks
    from dpbench.privacy.checkpoint import CheckpointPlan

    images = torch.randint(0, 256, (50, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    plan = CheckpointPlan(directory=tmp_path, every=3, identity={"run": "secure-resume"}, resume=resume)
    books = PrivacyBooks(dpbench.ImageSet(images, torch.zeros(50, dtype=torch.int64)), epsilon=2.0, delta=1e-5,
                         device=torch.device("cpu"), seed=0, rng=rng, checkpoints=plan)
    model = torch.nn.Linear(16, 1)

    def loss(model_fn, example):
        return model_fn(example["x"].reshape(1, -1).float() / 255).sum()

    settings = dpbench.DPSettings(expected_batch_size=10, steps=10, max_grad_norm=1.0)
    return books, books.open(model, loss, lambda examples, generator: examples, settings)


@pytest.mark.parametrize("rng, lost", [("secure", 2), ("seeded", 0)])
def test_a_resumed_secure_stage_charges_the_steps_started_after_its_checkpoint(tmp_path, rng, lost):
    _, killed = _stage(tmp_path, rng, resume=False)
    with pytest.raises(_Killed):
        killed.run(_CountingSGD(killed.trainable.values(), die_at=5))  # checkpoint at step 3, killed in step 5
    books, resumed = _stage(tmp_path, rng, resume=True)
    optimizer = _CountingSGD(resumed.trainable.values())
    if lost:
        with pytest.warns(UserWarning, match="charged to the ledger"):
            resumed.run(optimizer)
    else:
        resumed.run(optimizer)
    assert resumed.resumed_from_step == 3 and resumed.lost_steps == lost
    assert optimizer.updates == 10 - 3 - lost  # the lost steps' noise is never drawn again
    assert books.ledger("rdp").steps == 10 and books.ledger("rdp").stages[0].steps == 10
    started = tmp_path / "checkpoints" / "dp-stage0.started"
    assert started.exists() == (rng == "secure")
