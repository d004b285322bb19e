"""Failed runs, the record schema, and the leaderboard built from records."""
import json
import math

from click.testing import CliRunner

from dpbench.cli import main
from dpbench.leaderboard import build_leaderboard
from dpbench.results import PRIVACY_KEYS, REQUIRED_KEYS, write_record
from tests.conftest import install_fake_distribution

FAULTY_PLUGIN = '''
import torch
import dpbench
from dpbench.privacy.ledger import PrivacyLedger


class Overspender(dpbench.Method):
    """Claims a ledger whose noise is far too small for the target: the harness must refuse it."""
    name = "overspender"
    produces = "generator"

    def configure(self, preset, pair):
        return {"crash": False}

    def train(self, ctx, config):
        if config["crash"]:
            raise RuntimeError("out of memory in step 3")
        ledger = PrivacyLedger(accountant="rdp", noise_multiplier=0.3, sample_rate=0.5, steps=100,
                               max_grad_norm=1.0, delta=ctx.delta, epsilon_target=ctx.epsilon)
        return dpbench.MethodResult(artifact=Zeros(), ledger=ledger, trainable_parameters=1, total_parameters=1)


class Zeros:
    def sample(self, labels, seed, progress=None):
        return torch.zeros((len(labels), 1, 28, 28), dtype=torch.uint8)


@dpbench.hookimpl
def dpbench_register_methods(register):
    register(Overspender())
'''


def _run(tmp_path, *extra):
    return CliRunner().invoke(main, ["run", "--method", "overspender", "--pair", "digits-mnist", "--eps", "1",
                                     "--preset", "smoke", "--evaluator", "accuracy", "--out", str(tmp_path / "runs"),
                                     "--cache-dir", str(tmp_path / "cache"), *extra])


def test_a_ledger_over_budget_is_a_failed_run_never_a_completed_record(plugin_path, tmp_path):
    install_fake_distribution(plugin_path, "dpbench-faulty", "0.1.0", {"faulty": "thirdparty_faulty"},
                              {"thirdparty_faulty": FAULTY_PLUGIN})
    result = _run(tmp_path)
    assert result.exit_code == 1
    assert "exceeds the target" in result.output
    record = json.loads((tmp_path / "runs/digits-mnist/overspender/eps1/seed0/record.json").read_text())
    assert record["status"] == "failed" and record["error"]["type"] == "PrivacyBudgetError"
    assert record["metrics"] == {}
    assert not (tmp_path / "runs/digits-mnist/overspender/eps1/seed0/samples.png").exists()


def test_a_method_that_raises_is_a_failed_run_with_the_reason(plugin_path, tmp_path):
    install_fake_distribution(plugin_path, "dpbench-faulty", "0.1.0", {"faulty": "thirdparty_faulty"},
                              {"thirdparty_faulty": FAULTY_PLUGIN})
    result = _run(tmp_path, "--set", "crash=true")
    assert result.exit_code == 1
    record = json.loads((tmp_path / "runs/digits-mnist/overspender/eps1/seed0/record.json").read_text())
    assert record["status"] == "failed" and "out of memory in step 3" in record["error"]["message"]
    assert not list((tmp_path / "runs").rglob("*.tmp"))  # nothing half-written left behind


def _record(method, epsilon, seed, fid, accuracy, preset="default"):
    return {
        "schema_version": 1, "status": "completed", "preset": preset, "seed": seed,
        "method": {"name": method, "config": {}}, "pair": {"name": "digits-mnist"},
        "privacy": {"epsilon_target": epsilon, "epsilon": epsilon if math.isfinite(epsilon) else "inf",
                    "delta": 1e-5, "accountant": "rdp", "noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 10,
                    "max_grad_norm": 1.0, "noise_multiplicity": 1},
        "metrics": {"fid": {"value": fid, "higher_is_better": False},
                    "accuracy": {"value": accuracy, "higher_is_better": True}},
        "cost": {"wall_seconds": {"total": 100.0}, "peak_memory_mb": 500.0, "trainable_parameters": 1000,
                 "trainable_fraction": 0.25},
        "env": {}, "started_at": "", "finished_at": "",
    }


def test_leaderboard_mean_std_over_seeds_with_reference_rows(tmp_path):
    runs = tmp_path / "runs"
    records = [_record("dp-loda", 10.0, 0, 50.0, 0.80), _record("dp-loda", 10.0, 1, 70.0, 0.90),
               _record("dp-lora", 10.0, 0, 60.0, 0.85), _record("dp-loda", 1.0, 0, 90.0, 0.5),
               _record("dp-loda", math.inf, 0, 20.0, 0.97), _record("public-only", 0.0, 0, 120.0, 0.4)]
    for r in records:
        eps = r["privacy"]["epsilon_target"]
        label = "inf" if math.isinf(eps) else f"{eps:g}"
        write_record(runs / "digits-mnist" / r["method"]["name"] / f"eps{label}" / f"seed{r['seed']}", r)
    (runs / "digits-mnist/dp-loda/eps10/seed1/samples.png").write_bytes(b"seed1")
    (runs / "digits-mnist/dp-loda/eps10/seed0/samples.png").write_bytes(b"seed0")
    failed = {**_record("dp-ldm", 10.0, 0, 1.0, 1.0), "status": "failed"}
    write_record(runs / "digits-mnist/dp-ldm/eps10/seed0", failed)
    text = build_leaderboard(runs, tmp_path / "board").read_text()
    assert "## digits-mnist, ε = 10" in text and "## digits-mnist, ε = 1" in text
    assert "fid ↓" in text and "accuracy ↑" in text
    assert "60 ± 14.14" in text  # FID mean ± sample std of 50 and 70
    assert "85.00% ± 7.07%" in text
    assert "dp-ldm" not in text.split("## Published")[0]  # failed runs never reach the table
    eps10 = text.split("## digits-mnist, ε = 10")[1].split("##")[0]
    assert "*dp-loda (no DP, ε = ∞)*" in eps10 and "*public-only (no private data, ε = 0)*" in eps10
    assert "25.00%" in eps10  # the trainable fraction column
    assert "**dp-diffusion (DPDM, published)**" in text  # the marked reference row
    assert "[png](samples/digits-mnist/dp-loda-eps10.png)" in eps10
    assert (tmp_path / "board/samples/digits-mnist/dp-loda-eps10.png").read_bytes() == b"seed0"  # lowest seed


def test_written_records_carry_the_schema(tmp_path):
    record = _record("dp-loda", 10.0, 0, 50.0, 0.8)
    path = write_record(tmp_path / "r", record)
    loaded = json.loads(path.read_text())
    assert set(REQUIRED_KEYS) <= set(loaded) and set(PRIVACY_KEYS) <= set(loaded["privacy"])
