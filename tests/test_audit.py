"""The one-run privacy audit (Steinke, Nasr & Jagielski 2023): its bound, and that it catches a broken engine."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from dpbench.builtins.pair_digits_mnist import load_digits_mnist
from dpbench.cli import main
from dpbench.privacy import engine
from dpbench.privacy.audit import AuditSettings, epsilon_lower_bound, max_lower_bound, p_value
from dpbench.privacy.engine import DPSettings, PrivateTrainer

CLAIMED_EPSILON, DELTA = 1.0, 1e-5


def test_the_bound_grows_with_correct_guesses_and_is_capped_by_their_number():
    bounds = [epsilon_lower_bound(1000, 100, v, DELTA) for v in (50, 70, 90, 100)]
    assert bounds[0] == 0.0 and bounds == sorted(bounds) and bounds[-1] == max_lower_bound(1000, 100, DELTA)
    assert 3.3 < max_lower_bound(1000, 100, DELTA) < 3.6  # r = 100 guesses cannot certify more
    assert max_lower_bound(1000, 10, DELTA) < 1.5  # about 10 right guesses are needed to pass ε = 1
    eps = bounds[2]
    assert p_value(1000, 100, 90, eps * 0.99, DELTA) < 0.05 <= p_value(1000, 100, 90, eps * 1.01, DELTA) + 1e-12


def test_bad_audit_settings_are_refused():
    with pytest.raises(ValueError, match="guesses"):
        AuditSettings(canaries=10, guesses_in=8, guesses_out=8)


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(784, 10)  # 7,850 trainable coordinates for 1,000 canaries

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def _audit_the_engine() -> dict:
    """White-box audit of a DP-SGD run on the embedded pair's private digits at ε = 1 (a few seconds)."""
    private = load_digits_mnist().private_train
    trainer = PrivateTrainer(
        _Linear(), lambda model_fn, ex: F.cross_entropy(model_fn(ex["x"].unsqueeze(0)), ex["y"].unsqueeze(0)),
        lambda examples, generator: examples, DPSettings(expected_batch_size=1000, steps=16, max_grad_norm=1.0),
        private_x=private.images.flatten(1).float() / 255, private_y=private.labels, epsilon=CLAIMED_EPSILON,
        delta=DELTA, device=torch.device("cpu"), seed=0, audit=AuditSettings())
    trainer.run(torch.optim.SGD(list(trainer.trainable.values()), lr=0.5))
    return trainer.canaries.result(CLAIMED_EPSILON, DELTA)


def test_the_real_engine_passes_the_audit():
    result = _audit_the_engine()
    print(f"\naudit, real engine: claimed ε = 1, lower bound {result['epsilon_lower_bound']:.3f} "
          f"({result['correct_guesses']}/{result['guesses']} right, {result['canaries']} canaries; the largest "
          f"bound this audit can give is {result['max_lower_bound']:.2f})")
    assert result["epsilon_lower_bound"] <= CLAIMED_EPSILON


@pytest.mark.parametrize("broken", ["noise off", "clipping off"])
def test_a_broken_engine_is_flagged(monkeypatch, broken):
    if broken == "noise off":
        monkeypatch.setattr(engine, "add_gaussian_noise", lambda summed, *args, **kwargs: summed)
    else:
        monkeypatch.setattr(engine, "clip_factors", lambda norms, max_grad_norm: torch.ones_like(norms))
    result = _audit_the_engine()
    print(f"\naudit, {broken}: claimed ε = 1, lower bound {result['epsilon_lower_bound']:.3f} "
          f"({result['correct_guesses']}/{result['guesses']} right)")
    assert result["epsilon_lower_bound"] > CLAIMED_EPSILON


@pytest.mark.slow  # a dp-sgd audit run and a dp-sgd run through the CLI
def test_dpbench_audit_writes_an_audit_record_that_the_leaderboard_shows(tmp_path, shared_cache):
    from dpbench.report.leaderboard import build_leaderboard

    result = CliRunner().invoke(main, ["audit", "--method", "dp-sgd", "--pair", "digits-mnist", "--eps", "1",
                                       "--preset", "smoke", "--canaries", "200", "--guesses", "10",
                                       "--out", str(tmp_path / "runs"), "--cache-dir", str(shared_cache), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"epsilon_lower_bound", "epsilon_claimed", "canaries", "guesses"} <= set(report)
    assert report["canaries"] == 200 and report["guesses"] == 20 and report["epsilon_claimed"] == 1.0
    assert 0 <= report["epsilon_lower_bound"] <= 1.0 and math.isfinite(report["max_lower_bound"])
    record = json.loads(open(report["record"]).read())
    assert record["kind"] == "audit" and record["metrics"] == {} and "synthetic" not in record
    run = CliRunner().invoke(main, ["run", "--method", "dp-sgd", "--pair", "digits-mnist", "--eps", "1",
                                    "--preset", "smoke", "--out", str(tmp_path / "runs"), "--cache-dir",
                                    str(shared_cache)])
    assert run.exit_code == 0, run.output
    page = build_leaderboard(tmp_path / "runs", tmp_path / "board").read_text()
    details = page.split("### digits-mnist, ε = 1: details")[1]  # the summary and cost rows start with dp-sgd too
    row = next(line for line in details.splitlines() if line.startswith("| dp-sgd"))
    assert f"ε ≥ {report['epsilon_lower_bound']:.2f} ({report['correct_guesses']}/20, m = 200)" in row


def test_an_audit_of_a_non_private_run_is_refused(tmp_path, shared_cache):
    result = CliRunner().invoke(main, ["audit", "--method", "public-only", "--pair", "digits-mnist", "--eps", "1",
                                       "--preset", "smoke", "--out", str(tmp_path), "--cache-dir", str(shared_cache)])
    assert result.exit_code == 2 and "public-only" in result.output and "private data" in result.output
