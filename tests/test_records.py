"""Failed runs, the record schema (v3, and v2 records migrated on read), and the leaderboard built from records."""
import json
import math
import re
import warnings

import jsonschema
import pytest
from click.testing import CliRunner

from dpbench.api.registry import load_registry
from dpbench.cli import main
from dpbench.report.leaderboard import build_leaderboard
from dpbench.run.records import SCHEMA_VERSION, read_records, run_dir, validate_record, write_record
from dpbench.storage import cache_key
from dpbench.privacy.accountant import epsilon_of_history
from tests.conftest import install_fake_distribution

FAULTY_PLUGIN = '''
from dataclasses import dataclass

import torch
from torch import nn

import dpbench

FAULTS = ("none", "crash", "no_step", "overshare")


@dataclass(frozen=True)
class FaultySettings:
    fault: str = dpbench.setting("none", "what goes wrong", choices=FAULTS)
    samples_per_class: int = dpbench.setting(2, "samples per class", minimum=1)


def _loss(model_fn, example):
    return model_fn(example["x"].unsqueeze(0)).square().mean()


def _pass_through(examples, generator):
    return examples


def _flatten(images):
    return images.float().flatten(1) / 255


class Overspender(dpbench.Method):
    """Trains through the harness's DP engine as told, or crashes, skips the engine or overspends its shares."""
    name = "overspender"
    produces = "generator"
    Settings = FaultySettings

    def settings(self, preset, pair):
        return FaultySettings()

    def train(self, ctx, settings):
        if settings.fault == "crash":
            raise RuntimeError("out of memory in step 3")
        model = nn.Linear(784, 1)
        dp = dpbench.DPSettings(expected_batch_size=64, steps=3, max_grad_norm=1.0)
        if settings.fault != "no_step":
            share = 0.6 if settings.fault == "overshare" else 1.0
            trainer = ctx.private_trainer(model, _loss, _pass_through, dp, prepare=_flatten, budget_share=share)
            if settings.fault == "overshare":  # a second stage whose share takes the total above 1
                ctx.private_trainer(nn.Linear(784, 1), _loss, _pass_through, dp, prepare=_flatten, budget_share=0.6)
            trainer.run(torch.optim.SGD(model.parameters(), lr=0.1))
        return dpbench.MethodResult(artifact=Zeros(), trainable_parameters=1, total_parameters=1)


class Zeros:
    def sample(self, labels, seed, progress=None):
        return torch.zeros((len(labels), 1, 28, 28), dtype=torch.uint8)


@dpbench.hookimpl
def dpbench_register_methods(register):
    register(Overspender())
'''


@pytest.fixture
def faulty(plugin_path):
    install_fake_distribution(plugin_path, "dpbench-faulty", "0.1.0", {"faulty": "thirdparty_faulty"},
                              {"thirdparty_faulty": FAULTY_PLUGIN})


def _run(tmp_path, cache, *extra):
    return CliRunner().invoke(main, ["run", "--method", "overspender", "--pair", "digits-mnist", "--eps", "1",
                                     "--preset", "smoke", "--evaluator", "accuracy", "--out", str(tmp_path / "runs"),
                                     "--cache-dir", str(cache), *extra])


def _the_record(tmp_path):
    """The run's only record, at <out>/<pair>/<method>/<preset>-<config hash>/eps<E>/seed<S>/record.json."""
    [path] = list((tmp_path / "runs").rglob("record.json"))
    record = json.loads(path.read_text())
    relative = path.relative_to(tmp_path / "runs").as_posix()
    assert relative == f"digits-mnist/overspender/smoke-{record['config_hash']}/eps1/seed0/record.json"
    assert re.fullmatch(r"[0-9a-f]{10}", record["config_hash"])
    validate_record(record)
    return path, record


def test_an_honest_run_of_the_test_method_completes(faulty, tmp_path, shared_cache):
    """The control for the failures below: the same method, nothing wrong, writes a completed record."""
    result = _run(tmp_path, shared_cache)
    assert result.exit_code == 0, result.output
    path, record = _the_record(tmp_path)
    assert record["status"] == "completed" and "accuracy" in record["metrics"]
    assert record["privacy"]["epsilon"] <= 1 and record["privacy"]["steps"] == 3
    assert (path.parent / "samples.png").exists()


def test_a_ledger_over_budget_is_a_failed_run_never_a_completed_record(faulty, tmp_path, shared_cache, monkeypatch):
    """An engine whose noise is far too small for the target (here: a broken calibration) spends more than ε;
    the harness's independent re-check of the ledger refuses the run."""
    monkeypatch.setattr("dpbench.privacy.engine.calibrate_noise", lambda *args, **kwargs: 0.3)
    result = _run(tmp_path, shared_cache)
    assert result.exit_code == 1
    assert "exceeds the target" in result.output
    path, record = _the_record(tmp_path)
    assert record["status"] == "failed" and record["error"]["type"] == "PrivacyBudgetError"
    assert record["metrics"] == {}
    assert "epsilon" not in record["privacy"]  # no recomputed ε is ever written for a refused ledger
    assert not (path.parent / "samples.png").exists()


@pytest.mark.parametrize("fault, error_type, message", [
    ("no_step", "NoPrivateStepError", "took no private step"),
    ("overshare", "ValueError", "budget shares add up to 1.2 > 1"),
])
def test_the_harness_refuses_a_run_outside_its_engines(faulty, tmp_path, shared_cache, fault, error_type, message):
    result = _run(tmp_path, shared_cache, "--set", f"fault={fault}")
    assert result.exit_code == 1, result.output
    path, record = _the_record(tmp_path)
    assert record["status"] == "failed" and record["error"]["type"] == error_type
    assert message in record["error"]["message"]
    assert record["metrics"] == {} and not (path.parent / "samples.png").exists()


def test_a_method_that_raises_is_a_failed_run_with_the_reason(faulty, tmp_path, shared_cache):
    result = _run(tmp_path, shared_cache, "--set", "fault=crash")
    assert result.exit_code == 1
    _, record = _the_record(tmp_path)
    assert record["status"] == "failed" and "out of memory in step 3" in record["error"]["message"]
    assert record["method"]["overrides"] == {"fault": "crash"} and record["method"]["settings"]["fault"] == "crash"
    assert not list((tmp_path / "runs").rglob("*.tmp"))  # nothing half-written left behind


def _record(method, epsilon, seed, fid, accuracy, preset="default", overrides=None, pair="digits-mnist"):
    overrides = overrides or {}
    config = {"method": method, "settings": {"steps": 10, **overrides}, "preset": preset, "pair": pair,
              "data_digest": "0123abcd", "delta": 1e-5, "evaluators": {}}
    stage = {"noise_multiplier": 5.0 if math.isfinite(epsilon) else 0.0, "sample_rate": 0.1, "expected_batch_size": 400,
             "steps": 10, "planned_steps": 10, "max_grad_norm": 1.0 if math.isfinite(epsilon) else None,
             "noise_multiplicity": 1, "budget_share": 1.0}
    spent = epsilon_of_history([(5.0, 0.1, 10)], 1e-5, "rdp") if math.isfinite(epsilon) and epsilon else epsilon
    return {
        "schema_version": SCHEMA_VERSION, "status": "completed", "preset": preset, "seed": seed,
        "config_hash": cache_key(config, length=10), "config": config,
        "method": {"name": method, "produces": "generator", "reference": "", "settings": config["settings"],
                   "overrides": overrides, "plugin": {"name": "test", "distribution": None, "version": None}},
        "pair": {"name": pair, "data_digest": "0123abcd", "n_public": 1797, "n_private_train": 4000,
                 "n_private_test": 1000, "info": {}},
        "privacy": {"epsilon_target": epsilon, "epsilon": spent, "delta": 1e-5, "private": math.isfinite(epsilon),
                    "accountant": "rdp", "n_private": 4000, "steps": 10 if epsilon else 0,
                    "stages": [stage] if epsilon else []},
        "metrics": {"fid": {"value": fid, "higher_is_better": False, "reference": False, "evaluator": "fid"},
                    "accuracy": {"value": accuracy, "higher_is_better": True, "reference": False,
                                 "evaluator": "accuracy"}},
        "outside_guarantee": {"overlap": {}, "nonfinite_examples": 0, "metrics": {}},
        "cost": {"wall_seconds": {"total": 100.0}, "peak_memory_mb": 500.0, "trainable_parameters": 1000,
                 "trainable_fraction": 0.25},
        "env": {"dpbench": "test", "api_version": "1.0", "torch": "x", "python": "3", "git_commit": None,
                "device": "cpu"},
        "warnings": [], "started_at": "", "finished_at": "",
    }


def _write(runs, record):
    directory = run_dir(runs, record["pair"]["name"], record["method"]["name"], record["preset"], record["config_hash"],
                        record["privacy"]["epsilon_target"], record["seed"])
    write_record(directory, record)
    return directory


def _rows(table: str, label: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()
            if line.startswith(f"| {label} ")]


def test_leaderboard_mean_std_over_seeds_with_reference_rows(tmp_path):
    runs = tmp_path / "runs"
    records = [_record("dp-loda", 10.0, 0, 50.0, 0.80), _record("dp-loda", 10.0, 1, 70.0, 0.90),
               _record("dp-lora", 10.0, 0, 60.0, 0.85), _record("dp-loda", 1.0, 0, 90.0, 0.5),
               _record("dp-loda", math.inf, 0, 20.0, 0.97), _record("public-only", 0.0, 0, 120.0, 0.4),
               # the same cell (pair, method, ε) under another preset, and under the default preset with an override
               _record("dp-loda", 10.0, 0, 200.0, 0.30, preset="smoke"),
               _record("dp-loda", 10.0, 0, 40.0, 0.95, overrides={"rank": 8})]
    directories = [_write(runs, r) for r in records]
    (directories[1] / "samples.png").write_bytes(b"seed1")
    (directories[0] / "samples.png").write_bytes(b"seed0")
    failed = {**_record("dp-ldm", 10.0, 0, 1.0, 1.0), "status": "failed",
              "error": {"type": "RuntimeError", "message": "boom"}}
    _write(runs, failed)
    published = list(load_registry().published.values())  # registered through the dpbench_published_results hook
    text = build_leaderboard(runs, tmp_path / "board", published).read_text()
    assert "## digits-mnist, ε = 10" in text and "## digits-mnist, ε = 1" in text
    assert "fid ↓" in text and "accuracy ↑" in text
    assert "60 ± 127.1 (n = 2)" in text  # FID mean ± 95% t-interval (1 dof: 12.706 × 14.14 / √2) of 50 and 70
    assert "85.00% ± 63.53% (n = 2)" in text
    assert "dp-ldm" not in text.split("## Published")[0]  # failed runs never reach the table
    eps10 = text.split("## digits-mnist, ε = 10")[1].split("##")[0]
    references = text.split("### digits-mnist: references")[1].split("##")[0]  # once per pair, not per ε
    assert re.search(r"\| dp-loda \(default, preset defaults, \w+\) without DP \(ε = ∞\)", references)
    assert "| public-only generator: public-only (ε = 0)" in references
    assert "25.00%" in text.split("### digits-mnist: costs")[1]  # the trainable fraction
    # the published DPDM number is MNIST's (pair svhn-mnist): shown only once a run of that pair is there
    assert "**dp-diffusion (DPDM, published)**" not in text

    # Rows are (method, preset, config hash): smoke and default runs of one cell are never averaged together,
    # and neither is a run with overridden settings.
    loda_rows = _rows(eps10, "dp-loda")
    assert len(loda_rows) == 3
    by_config = {(row[1], row[2].split(" (")[0]): row for row in loda_rows}
    default_hash = records[0]["config_hash"]
    assert set(by_config) == {("default", "preset defaults"), ("smoke", "preset defaults"), ("default", "rank=8")}
    default_row = by_config[("default", "preset defaults")]
    assert default_row[3] == "2" and default_row[4] == "seeded"  # the noise column: these are simulations of DP
    assert default_row[5] == "60 ± 127.1 (n = 2)" and f"({default_hash[:6]})" in default_row[2]
    assert by_config[("smoke", "preset defaults")][3] == "1"
    assert by_config[("smoke", "preset defaults")][5] == "200 (n = 1)"
    assert by_config[("default", "rank=8")][5] == "40 (n = 1)"
    assert len({records[0]["config_hash"], records[6]["config_hash"], records[7]["config_hash"]}) == 3

    link = f"samples/digits-mnist/dp-loda-default-{default_hash[:6]}-eps10.png"
    assert f"[png]({link})" in default_row[-1]
    assert (tmp_path / "board" / link).read_bytes() == b"seed0"  # lowest seed
    assert by_config[("smoke", "preset defaults")][-1] == "–"  # no grid for the smoke run

    _write(runs, _record("dp-loda", 10.0, 0, 30.0, 0.9, pair="svhn-mnist"))
    text = build_leaderboard(runs, tmp_path / "board", published).read_text()
    assert "## svhn-mnist, ε = 10" in text
    assert "**dp-diffusion (DPDM, published)**" in text.split("### svhn-mnist: references")[1]  # marked row


def test_records_of_another_schema_version_are_skipped_with_a_warning(tmp_path):
    runs = tmp_path / "runs"
    _write(runs, _record("dp-loda", 10.0, 0, 50.0, 0.8))
    old = runs / "digits-mnist/dp-loda/eps10/seed0"  # the v1 layout and schema
    old.mkdir(parents=True)
    (old / "record.json").write_text(json.dumps({"schema_version": 1, "status": "completed"}))
    with pytest.warns(UserWarning, match=r"skipped 1 record\(s\) not in schema v3.*eps10/seed0/record.json \(schema v1\)"):
        records = read_records(runs)
    assert [r["schema_version"] for r in records] == [SCHEMA_VERSION]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = build_leaderboard(runs, tmp_path / "board").read_text()
    assert "dp-loda" in text  # the current record still makes the table


def test_written_records_carry_the_schema(tmp_path):
    record = _record("dp-loda", 10.0, 0, 50.0, 0.8)
    path = write_record(tmp_path / "r", record)
    loaded = json.loads(path.read_text())
    assert loaded["schema_version"] == SCHEMA_VERSION == 3
    validate_record(loaded)
    assert {"schema_version", "status", "method", "pair", "preset", "seed", "config_hash", "config", "privacy",
            "metrics", "outside_guarantee", "cost", "env", "warnings", "started_at", "finished_at"} <= set(loaded)
    assert {"epsilon_target", "epsilon", "delta", "private", "accountant", "n_private", "steps", "stages"} \
        <= set(loaded["privacy"])
    inf = write_record(tmp_path / "inf", _record("dp-loda", math.inf, 0, 50.0, 0.8))
    assert json.loads(inf.read_text())["privacy"]["epsilon"] == "inf"  # JSON has no inf


@pytest.mark.parametrize("break_it, where", [
    (lambda r: r.pop("config_hash"), "config_hash"),
    (lambda r: r["privacy"].pop("stages"), "stages"),  # a completed record needs its full privacy section
    (lambda r: r.update(schema_version=1), "schema_version"),
    (lambda r: r.update(status="failed"), "error"),  # a failed record needs its error
    (lambda r: r["privacy"]["stages"][0].update(sample_rate=0), "sample_rate"),
    (lambda r: r["method"].pop("plugin"), "plugin"),
    (lambda r: r.pop("outside_guarantee"), "outside_guarantee"),
    # a figure outside the guarantee is never written beside the ε that does not cover it
    (lambda r: r["privacy"].update(nonfinite_examples=0), "nonfinite_examples"),
    (lambda r: r["pair"].update(overlap={"public~private_train": 0}), "overlap"),
])
def test_a_record_outside_the_schema_is_never_written(tmp_path, break_it, where):
    record = _record("dp-loda", 10.0, 0, 50.0, 0.8)
    break_it(record)
    with pytest.raises(jsonschema.ValidationError) as err:
        write_record(tmp_path / "r", record)
    assert where in str(err.value)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def _v2_record() -> dict:
    """A record as schema v2 wrote it: the overlap counts in `pair`, the non-finite count in `privacy` and the
    real-data ceiling among the metrics."""
    record = _record("dp-loda", 10.0, 0, 50.0, 0.8)
    record.pop("outside_guarantee")
    record["schema_version"] = 2
    record["pair"]["overlap"] = {"public~private_train": 0, "private_train~private_test": 32}
    record["privacy"]["nonfinite_examples"] = 3
    record["metrics"]["accuracy_real_data"] = {"value": 0.94, "higher_is_better": True, "reference": True,
                                               "evaluator": "accuracy"}
    return record


def test_v2_records_are_read_as_v3_with_the_figures_outside_the_guarantee_moved_and_the_file_untouched(tmp_path):
    directory = tmp_path / "runs" / "digits-mnist" / "dp-loda" / "default-0123456789" / "eps10" / "seed0"
    directory.mkdir(parents=True)
    path = directory / "record.json"
    path.write_text(json.dumps(_v2_record(), indent=2))
    before = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a v2 record is not skipped
        [record] = read_records(tmp_path / "runs")
    assert path.read_bytes() == before  # the committed file is never rewritten
    assert record["schema_version"] == 3 and record["_migrated_from"] == 2
    outside = record["outside_guarantee"]
    assert outside["overlap"] == {"public~private_train": 0, "private_train~private_test": 32}
    assert outside["nonfinite_examples"] == 3 and outside["metrics"]["accuracy_real_data"]["value"] == 0.94
    assert "overlap" not in record["pair"] and "nonfinite_examples" not in record["privacy"]
    assert set(record["metrics"]) == {"fid", "accuracy"}
    validate_record({k: v for k, v in record.items() if not k.startswith("_")})


def test_every_committed_record_loads_as_v3_and_validates():
    from pathlib import Path

    committed = Path(__file__).resolve().parents[1] / "leaderboard" / "records"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = read_records(committed)
    assert records and all(r["schema_version"] == SCHEMA_VERSION for r in records)
    for record in records:
        validate_record({k: v for k, v in record.items() if not k.startswith("_")})
        assert "accuracy_real_data" not in record["metrics"]
