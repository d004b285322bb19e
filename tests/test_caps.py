"""The caps of a trial run (--max-steps, --max-samples, --max-batch): they lower what the preset asks for, never raise it; σ is
calibrated for the steps actually planned; they are hashed and recorded when set, and absent when not."""
import dataclasses
import json
import math

import pytest
import torch
from click.testing import CliRunner

from dpbench.api.registry import load_registry
from dpbench.cli import main
from dpbench.data.types import ImageSet
from dpbench.privacy.accountant import calibrate_noise
from dpbench.privacy.books import PrivacyBooks
from dpbench.privacy.engine import DPSettings
from dpbench.run.config import run_location
from dpbench.run.request import RunInputError, RunRequest, run_caps
from dpbench.run.resolve import resolve


def _books(max_steps, max_batch=None):
    private = ImageSet(torch.zeros(200, 1, 4, 4, dtype=torch.uint8), torch.zeros(200, dtype=torch.int64))
    return PrivacyBooks(private, epsilon=3.0, delta=1e-5, device=torch.device("cpu"), seed=0, max_steps=max_steps,
                        max_batch=max_batch)


def _open(books, steps):
    model = torch.nn.Linear(16, 1)
    settings = DPSettings(expected_batch_size=20, steps=steps, max_grad_norm=1.0)
    loss = lambda model_fn, example: model_fn(example["x"].reshape(1, -1)).sum()  # noqa: E731
    return books.open(model, loss, lambda examples, generator: examples, settings, prepare=lambda x: x.float())


@pytest.mark.parametrize("steps, cap, planned", [(50, 7, 7), (5, 7, 5), (50, None, 50)])
def test_the_step_cap_lowers_the_plan_and_sigma_is_calibrated_for_it(steps, cap, planned):
    trainer = _open(_books(cap), steps)
    assert trainer.plan.planned_steps == planned
    q = 20 / 200
    assert trainer.plan.noise_multiplier == pytest.approx(calibrate_noise(3.0, 1e-5, q, planned, "rdp"))
    if cap is not None and cap < steps:  # fewer steps at the same ε: less noise per step than the uncapped plan
        assert trainer.plan.noise_multiplier < calibrate_noise(3.0, 1e-5, q, steps, "rdp")


@pytest.mark.parametrize("cap, expected", [(8, 8), (64, 20), (None, 20)])
def test_the_batch_cap_lowers_the_sample_rate_and_sigma_is_calibrated_for_it(cap, expected):
    trainer = _open(_books(None, max_batch=cap), 50)
    assert trainer.plan.expected_batch_size == expected and trainer.plan.sample_rate == pytest.approx(expected / 200)
    assert trainer.plan.noise_multiplier == pytest.approx(calibrate_noise(3.0, 1e-5, expected / 200, 50, "rdp"))
    if expected < 20:  # a smaller sample rate at the same ε and steps: amplification allows less noise
        assert trainer.plan.noise_multiplier < calibrate_noise(3.0, 1e-5, 20 / 200, 50, "rdp")


def test_a_capped_stage_can_take_only_its_capped_steps():
    trainer = _open(_books(3), 50)
    optimizer = torch.optim.SGD(trainer.trainable.values(), lr=0.1)
    trainer.run(optimizer)
    assert trainer.steps_done == 3
    with pytest.raises(RuntimeError, match="planned number of DP steps is spent"):
        trainer.step(optimizer)
    assert math.isfinite(trainer.epsilon_so_far()) and trainer.epsilon_so_far() <= 3.0 * (1 + 1e-6)


def _request(**caps):
    return RunRequest(method="dp-loda", pair="digits-mnist", epsilon=5.0, preset="smoke", **caps)


def test_caps_are_hashed_when_set_and_absent_when_not():
    registry = load_registry()
    plain, plain_hash, _ = run_location(_request(), resolve(registry, _request()), "digest")
    assert "caps" not in plain and run_caps(_request()) == {}
    hashes = {plain_hash}
    for caps in ({"max_steps": 2}, {"max_steps": 3}, {"max_samples": 100}, {"max_steps": 2, "max_samples": 100},
                 {"max_batch": 16}):
        config, config_hash, _ = run_location(_request(**caps), resolve(registry, _request(**caps)), "digest")
        assert config["caps"] == caps
        hashes.add(config_hash)
    assert len(hashes) == 6  # every cap, and every value of it, is another config


def test_the_sample_cap_lowers_samples_per_class_and_never_raises_it():
    registry = load_registry()
    preset = resolve(registry, _request()).settings.samples_per_class  # 20 per class at smoke on 10 classes
    assert resolve(registry, _request(max_samples=55)).settings.samples_per_class == 5
    assert resolve(registry, _request(max_samples=10 ** 6)).settings.samples_per_class == preset
    with pytest.raises(RunInputError, match="fewer than one synthetic image for each"):
        resolve(registry, _request(max_samples=9))
    for bad in (0, -1, True, 2.5):
        with pytest.raises(RunInputError, match="must be an int >= 1"):
            resolve(registry, _request(max_steps=bad))


def test_a_capped_pretraining_recipe_is_its_own_and_never_uses_shipped_weights():
    from dpbench.builtins import backbones

    ctx = type("Ctx", (), {"preset": "default", "max_steps": 4})()
    train = backbones._training("PRETRAIN_PRESETS", ctx)
    assert train.steps == 4 and dataclasses.replace(train, steps=6000) == backbones._table("PRETRAIN_PRESETS", "default")
    assert not backbones._shipped(ctx, "PRETRAIN_PRESETS")
    ctx.max_steps = 10 ** 6  # a cap above the recipe changes nothing: the shipped weights still apply
    assert backbones._training("PRETRAIN_PRESETS", ctx) == backbones._table("PRETRAIN_PRESETS", "default")
    assert backbones._shipped(ctx, "PRETRAIN_PRESETS", "AUTOENCODER_PRESETS")


@pytest.mark.slow  # a whole run through the CLI (about 10 s on an idle machine)
def test_a_capped_run_records_its_caps_and_spends_only_the_capped_steps(mock_method, tmp_path, shared_cache):
    args = ["run", "--method", mock_method, "--pair", "digits-mnist", "--eps", "2", "--preset", "smoke",
            "--set", "steps=40", "--set", "samples_per_class=20", "--evaluator", "accuracy", "--cache-dir",
            str(shared_cache), "--json"]
    capped = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "capped"), "--max-steps", "3",
                                       "--max-samples", "50", "--max-batch", "16"])
    assert capped.exit_code == 0, capped.output
    record = json.loads(capped.stdout)
    assert record["config"]["caps"] == {"max_steps": 3, "max_samples": 50, "max_batch": 16}
    assert [s["expected_batch_size"] for s in record["privacy"]["stages"]] == [16]
    assert record["privacy"]["steps"] == 3 and [s["planned_steps"] for s in record["privacy"]["stages"]] == [3]
    assert record["privacy"]["epsilon"] <= 2.0
    assert record["method"]["settings"]["samples_per_class"] == 5 and record["synthetic"]["n"] == 50
    public_only = [json.loads(p.read_text())["key"] for p in (shared_cache / "public_only").glob("*.json")]
    assert any(key["n_public"] == 50 for key in public_only)  # the public-only reference trained on 50 images
    assert record["metrics"]["accuracy"]["n_test"] == 50  # and every score tests on the test split's first 50


@pytest.mark.parametrize("cap, expected", [(30, 30), (None, 200)])
def test_a_trial_caps_the_fid_reference_like_its_samples(monkeypatch, tmp_path, cap, expected):
    from dpbench.api.context import EvalContext
    from dpbench.eval import fid
    from dpbench.eval.evaluators import FidKidEvaluator

    seen = {}

    def fake_fid_kid(generated, reference, **kwargs):
        seen.update(n=len(reference), key=kwargs["reference_cache_key"])
        return {"fid": 1.0, "kid": 0.0, "n_generated": len(generated), "n_reference": len(reference), "kid_std": 0.0,
                "kid_subset_size": 2, "kid_subsets": 1}

    monkeypatch.setattr(fid, "fid_kid", fake_fid_kid)
    test = ImageSet(torch.zeros(200, 1, 8, 8, dtype=torch.uint8), torch.zeros(200, dtype=torch.int64))
    ctx = EvalContext(pair=load_registry().pair("digits-mnist"), public_train=test, private_test=test, artifact=None,
                      produces="generator", samples=test.images[:30], sample_labels=test.labels[:30], seed=0,
                      device=torch.device("cpu"), preset="smoke", progress=None, cache_dir=tmp_path, max_samples=cap)
    FidKidEvaluator().evaluate(ctx)
    assert seen["n"] == expected and seen["key"].endswith(f"-{expected}")  # its own reference cache entry


def test_a_capped_pretraining_must_name_its_own_folder():
    result = CliRunner().invoke(main, ["pretrain", "--pair", "digits-mnist", "--preset", "smoke", "--max-steps", "2"])
    assert result.exit_code == 2 and "pass --out FOLDER" in result.output


def test_a_run_that_cannot_fit_is_refused_before_it_starts_naming_the_memory(mock_method, tmp_path, monkeypatch):
    from dpbench.run.memory import parse_bytes

    assert parse_bytes("24GB") == 24 * 10**9 and parse_bytes("1.5 GiB") == 3 * 2**29 and parse_bytes("4096") == 4096
    monkeypatch.setenv("DPBENCH_MEMORY_LIMIT", "1GB")  # below the fixed allowance alone
    args = ["run", "--method", mock_method, "--pair", "digits-mnist", "--eps", "2", "--preset", "smoke",
            "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "needs about 2.0 GiB of host memory, more than the 0.9 GiB available" in result.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()  # nothing written, nothing computed
    monkeypatch.setenv("DPBENCH_MEMORY_LIMIT", "lots")
    assert "is not a size" in CliRunner().invoke(main, args).output



def test_the_shipping_size_limit_binds_a_package_folder_only(tmp_path):
    from dpbench.pretrain.shipped import MAX_FILE_BYTES, ShippedStore

    big = {"w": torch.zeros(MAX_FILE_BYTES // 4 + 1024)}  # a paper-width backbone is 12 MB
    weights, _ = ShippedStore(tmp_path / "paper-weights").write("big", big, {"recipe": 1}, {})
    assert weights.stat().st_size > MAX_FILE_BYTES  # the user's --out folder: written
    (tmp_path / "package").mkdir()
    (tmp_path / "package" / "__init__.py").touch()
    with pytest.raises(ValueError, match="over the 8 MB limit for a shipped file"):
        ShippedStore(tmp_path / "package" / "weights").write("big", big, {"recipe": 1}, {})


def test_a_capped_run_relaunched_under_torchrun_keeps_its_caps():
    from dpbench.run.launch import request_arguments

    for caps in ({}, {"max_steps": 3}, {"max_steps": 1, "max_samples": 20}, {"max_batch": 8}):
        argv = request_arguments(RunRequest(method="m", pair="p", epsilon=1.0, nproc=2, **caps))
        params = main.commands["run"].make_context("run", argv[1:]).params
        assert {k: params[k] for k in ("max_steps", "max_samples", "max_batch") if params[k] is not None} == caps
