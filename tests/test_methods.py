"""Every built-in method runs end to end through `dpbench run` on the embedded pair with the smoke preset (marked
slow: these are the real methods' end-to-end runs; the harness's own tests use the mock method of tests/conftest.py)."""
import json
import math

import pytest
from click.testing import CliRunner

from dpbench.cli import main
from dpbench.privacy.accountant import epsilon_of_history, validate_ledger
from dpbench.privacy.ledger import PrivacyLedger
from dpbench.run.records import run_dir

GENERATORS = ["dp-loda", "dp-lora", "dp-ldm", "dp-diffusion"]


def _run(tmp_path, shared_cache, *args):
    return CliRunner().invoke(main, ["run", "--pair", "digits-mnist", "--preset", "smoke", "--out", str(tmp_path / "runs"),
                                     "--cache-dir", str(shared_cache), "--json", *args])


def _ledger(privacy) -> PrivacyLedger:
    """The record's privacy section read back as the harness's ledger."""
    return PrivacyLedger.from_dict(privacy)


def _directory(tmp_path, record):
    return run_dir(tmp_path / "runs", record["pair"]["name"], record["method"]["name"], record["preset"],
                   record["config_hash"], float(record["privacy"]["epsilon_target"]), record["seed"])


def test_all_five_methods_and_the_public_only_reference_are_listed():
    methods = {m["name"]: m for m in json.loads(CliRunner().invoke(main, ["list", "methods", "--json"]).stdout)}
    assert {"dp-loda", "dp-lora", "dp-ldm", "dp-diffusion", "dp-sgd", "public-only"} <= set(methods)
    assert methods["dp-sgd"]["produces"] == "classifier"
    plugins = {p["name"]: p for p in json.loads(CliRunner().invoke(main, ["plugins", "--json"]).stdout)}
    for name in GENERATORS + ["dp-sgd", "public-only"]:  # built-ins come through the entry-point group
        assert plugins[methods[name]["plugin"]]["distribution"] == "dpbench"


@pytest.mark.slow
def test_dp_loda_smoke_with_every_evaluator(tmp_path, shared_cache):
    # A --max-samples 50 trial: every evaluator runs on 50 synthetic images against 50-image references (the
    # smoke preset's 1,000-image FID reference is an Inception pass that dominated this test; test_fid covers it).
    result = _run(tmp_path, shared_cache, "--method", "dp-loda", "--eps", "10", "--max-samples", "50")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["status"] == "completed"
    assert record["method"]["settings"]["samples_per_class"] == 5 and record["config"]["caps"] == {"max_samples": 50}
    assert record["metrics"]["fid"]["n_reference"] == 50 and record["synthetic"]["n"] == 50
    assert {"fid", "kid", "accuracy", "accuracy_public_only"} <= set(record["metrics"])
    outside = record["outside_guarantee"]["metrics"]  # figures computed on private train: ε does not cover them
    assert {"accuracy_real_data", "copies_flagged"} <= set(outside) and outside["copies_flagged"]["value"] == 0
    ceiling = outside["accuracy_real_data"]
    assert ceiling["reference"] and 0.0 <= ceiling["value"] <= 1.0
    assert record["metrics"]["fid"]["value"] > 0 and record["metrics"]["fid"]["higher_is_better"] is False
    privacy = record["privacy"]
    ledger = _ledger(privacy)
    assert epsilon_of_history(ledger.history(), ledger.delta, ledger.accountant) == privacy["epsilon"] <= 10
    assert validate_ledger(ledger, epsilon_target=10.0, delta=1e-5, n_private=4000) == privacy["epsilon"]
    [stage] = privacy["stages"]  # one DP stage: the smoke preset's 4 steps at expected batch 32 of 4,000
    assert (stage["steps"], stage["planned_steps"], stage["expected_batch_size"]) == (4, 4, 32)
    assert stage["sample_rate"] == pytest.approx(32 / 4000) and stage["noise_multiplier"] > 0
    assert privacy["private"] is True and privacy["n_private"] == 4000 and privacy["steps"] == 4
    cost = record["cost"]
    assert 0 < cost["trainable_parameters"] < cost["total_parameters"]
    assert set(cost["wall_seconds"]) >= {"pretrain", "finetune", "sample", "eval_fid", "eval_accuracy", "total"}
    directory = _directory(tmp_path, record)
    assert directory.name == "seed0" and directory.parent.name == "eps10"
    assert directory.parent.parent.name == f"smoke-{record['config_hash']}"
    assert (directory / "record.json").exists() and (directory / "samples.png").exists()
    assert record["env"]["api_version"] == "1.0"


@pytest.mark.slow
@pytest.mark.parametrize("method, scope_check", [
    ("dp-lora", lambda s: s["scope"] == "lora" and s["backbone"] == "latent"),
    ("dp-ldm", lambda s: s["scope"] == "attention" and s["backbone"] == "latent"),
    ("dp-diffusion", lambda s: s["scope"] == "full" and s["backbone"] == "pixel"),
])
def test_generator_methods_smoke(tmp_path, shared_cache, method, scope_check):
    result = _run(tmp_path, shared_cache, "--method", method, "--eps", "5", "--evaluator", "accuracy")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["status"] == "completed" and scope_check(record["method"]["settings"])
    assert record["privacy"]["epsilon"] <= 5
    fraction = record["cost"]["trainable_fraction"]
    assert (fraction == 1.0) if method == "dp-diffusion" else (0 < fraction < 1)


@pytest.mark.slow
def test_dp_sgd_baseline_is_a_classifier_scored_by_accuracy(tmp_path, shared_cache):
    result = _run(tmp_path, shared_cache, "--method", "dp-sgd", "--eps", "1")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert set(record["metrics"]) == {"accuracy", "accuracy_public_only"}  # no FID for a classifier
    assert record["privacy"]["epsilon"] <= 1
    assert record["privacy"]["stages"][0]["steps"] == 5
    assert not (_directory(tmp_path, record) / "samples.png").exists()
    assert (_directory(tmp_path, record) / "record.json").exists()


@pytest.mark.slow
def test_non_private_run_and_public_only_reference(tmp_path, shared_cache):
    result = _run(tmp_path, shared_cache, "--method", "dp-loda", "--eps", "inf", "--evaluator", "accuracy")
    assert result.exit_code == 0, result.output
    privacy = json.loads(result.stdout)["privacy"]
    assert privacy["private"] is False and privacy["epsilon"] == "inf"
    assert [(s["noise_multiplier"], s["max_grad_norm"]) for s in privacy["stages"]] == [(0, None)]

    result = _run(tmp_path, shared_cache, "--method", "public-only", "--eps", "0", "--evaluator", "accuracy")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["privacy"]["epsilon"] == 0 and record["privacy"]["steps"] == 0
    assert record["privacy"]["stages"] == [] and record["privacy"]["private"] is False
    assert record["cost"]["trainable_parameters"] == 0


def test_bad_set_overrides_exit_2_and_write_nothing(tmp_path, shared_cache):
    bad = _run(tmp_path, shared_cache, "--method", "dp-loda", "--eps", "10", "--set", "scope=everything")
    assert bad.exit_code == 2 and "unknown scope 'everything'" in bad.output
    bad = _run(tmp_path, shared_cache, "--method", "public-only", "--eps", "10")
    assert bad.exit_code == 2 and "--eps 0" in bad.output
    bad = _run(tmp_path, shared_cache, "--method", "dp-loda", "--eps", "10", "--evaluator", "accuracy", "--set",
               "min_timestep=1000")
    assert bad.exit_code == 2 and "min_timestep" in bad.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_set_overrides_are_validated_and_recorded(tmp_path, shared_cache):
    ok = _run(tmp_path, shared_cache, "--method", "dp-loda", "--eps", "10", "--evaluator", "accuracy",
              "--set", "backbone=latent", "--set", "noise_multiplicity=2")
    assert ok.exit_code == 0, ok.output
    record = json.loads(ok.stdout)
    assert record["method"]["settings"]["backbone"] == "latent"
    assert record["method"]["settings"]["noise_multiplicity"] == 2  # parsed by the setting's type
    assert record["method"]["overrides"] == {"backbone": "latent", "noise_multiplicity": "2"}  # as given
    # the hashed settings are exactly the recorded ones, defaults included (config version 2: no special cases)
    assert record["method"]["settings"]["physical_batch_size"] == 64 and record["method"]["settings"]["min_timestep"] == 0
    assert record["config"]["settings"] == record["method"]["settings"]
    assert [s["noise_multiplicity"] for s in record["privacy"]["stages"]] == [2]


@pytest.mark.slow
def test_physical_batch_size_reaches_the_engine_and_the_hash_only_off_its_default(tmp_path, shared_cache,
                                                                                  monkeypatch):
    from dpbench.privacy import engine

    seen = []
    original = engine.PrivateTrainer.__init__

    def spy(self, model, loss, make_batch, settings, **kwargs):
        seen.append(settings.physical_batch_size)
        original(self, model, loss, make_batch, settings, **kwargs)

    monkeypatch.setattr(engine.PrivateTrainer, "__init__", spy)
    args = ("--method", "dp-loda", "--eps", "10", "--evaluator", "accuracy")
    default, small = _run(tmp_path, shared_cache, *args), _run(tmp_path, shared_cache, *args, "--set",
                                                               "physical_batch_size=8")
    assert default.exit_code == 0 and small.exit_code == 0, default.output + small.output
    assert seen == [64, 8]
    default, small = json.loads(default.stdout), json.loads(small.stdout)
    assert default["config"]["settings"]["physical_batch_size"] == 64  # hashed at every value, its default too
    assert small["config"]["settings"]["physical_batch_size"] == 8 and small["config_hash"] != default["config_hash"]


@pytest.mark.slow
def test_min_timestep_reaches_the_batch_maker_and_the_hash_only_off_its_default(tmp_path, shared_cache,
                                                                               monkeypatch):
    from dpbench.finetune import diffusion_finetune as diffusion

    drawn = []
    original = diffusion.diffusion_batch_maker

    def spy(*args, **kwargs):
        make_batch = original(*args, **kwargs)

        def recording(examples, generator):
            batch = make_batch(examples, generator)
            drawn.append(batch["t"].min().item())
            return batch
        return recording

    monkeypatch.setattr(diffusion, "diffusion_batch_maker", spy)
    args = ("--method", "dp-loda", "--eps", "10", "--evaluator", "accuracy")
    default = _run(tmp_path, shared_cache, *args)
    from_default = len(drawn)
    window = _run(tmp_path, shared_cache, *args, "--set", "min_timestep=900")
    assert default.exit_code == 0 and window.exit_code == 0, default.output + window.output
    default, window = json.loads(default.stdout), json.loads(window.stdout)
    assert min(drawn[:from_default]) < 900 and len(drawn) > from_default and min(drawn[from_default:]) >= 900
    assert window["method"]["settings"]["min_timestep"] == 900
    assert default["config"]["settings"]["min_timestep"] == 0  # hashed at every value, its default too
    assert window["config"]["settings"]["min_timestep"] == 900 and window["config_hash"] != default["config_hash"]


def test_delta_at_or_above_one_over_n_is_refused_and_nothing_is_written(tmp_path, shared_cache):
    result = _run(tmp_path, shared_cache, "--method", "dp-sgd", "--eps", "2", "--delta", "0.001")
    assert result.exit_code == 2
    assert "delta=0.001 >= 1/n_private=0.00025" in result.output and "--delta" in result.output
    assert not list(tmp_path.rglob("record.json"))


@pytest.mark.slow
def test_a_large_delta_runs_only_when_allowed_and_is_marked(tmp_path, shared_cache):
    from dpbench.report.leaderboard import render

    result = _run(tmp_path, shared_cache, "--method", "dp-sgd", "--eps", "2", "--delta", "0.001",
                  "--allow-large-delta")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["privacy"]["delta"] == 0.001 and record["privacy"]["large_delta"] is True  # δ kept as given
    assert any("--allow-large-delta" in w for w in record["warnings"])
    assert "δ = 0.001 ≥ 1/n" in render([record])
    assert record["outside_guarantee"]["overlap"]["public~private_train"] == 0  # every record carries them


def test_paper_preset_takes_dpdm_schedules_per_pair_and_epochs_fix_the_steps():
    from dpbench.api.registry import load_registry
    from dpbench.finetune.method import DiffusionSettings, planned_steps

    registry = load_registry()
    diffusion = registry.method("dp-diffusion")
    mnist = diffusion.settings("paper", registry.pair("svhn-mnist"))
    cifar = diffusion.settings("paper", registry.pair("imagenet32-cifar10"))
    assert isinstance(mnist, DiffusionSettings) and isinstance(cifar, DiffusionSettings)
    # DPDM's released configs: MNIST batch 4096, 300 epochs, K = 32; CIFAR-10 batch 2048, 500 epochs, K = 8
    assert (mnist.batch_size, mnist.epochs, mnist.noise_multiplicity, mnist.lr) == (4096, 300, 32, 3e-4)
    assert (cifar.batch_size, cifar.epochs, cifar.noise_multiplicity) == (2048, 500, 8)
    assert mnist.samples_per_class * 10 == 60_000 and cifar.samples_per_class * 10 == 50_000
    assert planned_steps(mnist, 60_000) == 4395  # ceil(300 * 60000 / 4096)
    assert planned_steps(mnist.with_(epochs=None, steps=7), 60_000) == 7
    default = diffusion.settings("default", registry.pair("digits-mnist"))
    assert default.epochs is None and default.samples_per_class == 100
