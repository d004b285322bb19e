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
