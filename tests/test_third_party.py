"""The README's minimal third-party plugin, installed as a distribution and run through `dpbench run`."""
import json
import re

from click.testing import CliRunner

from dpbench.cli import main
from dpbench.privacy.accountant import recompute_epsilon
from dpbench.privacy.ledger import PrivacyLedger
from tests.conftest import REPO, install_fake_distribution


def _readme_plugin_source() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### A complete minimal method plugin", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_plugin_runs_through_dpbench_run(plugin_path, tmp_path):
    install_fake_distribution(plugin_path, "dpbench-mean-image", "0.1.0", {"mean_image": "thirdparty_mean_image"},
                              {"thirdparty_mean_image": _readme_plugin_source()})
    runner = CliRunner()
    listed = json.loads(runner.invoke(main, ["list", "methods", "--json"]).stdout)
    assert any(m["name"] == "dp-mean-image" and m["plugin"] == "mean_image" for m in listed)

    out = tmp_path / "runs"
    result = runner.invoke(main, ["run", "--method", "dp-mean-image", "--pair", "digits-mnist", "--eps", "1",
                                  "--preset", "smoke", "--evaluator", "accuracy", "--out", str(out),
                                  "--cache-dir", str(tmp_path / "cache"), "--set", "steps=10", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["status"] == "completed"
    assert record["method"]["plugin"] == {"name": "mean_image", "distribution": "dpbench-mean-image", "version": "0.1.0"}
    assert record["method"]["config"]["steps"] == 10
    privacy = record["privacy"]
    assert privacy["steps"] == 10 and privacy["delta"] == 1e-5
    assert privacy["epsilon"] <= 1.0
    fields = {k: privacy[k] for k in ("accountant", "noise_multiplier", "sample_rate", "steps", "max_grad_norm",
                                      "delta", "noise_multiplicity")}
    assert recompute_epsilon(PrivacyLedger(**fields, epsilon_target=1.0)) == privacy["epsilon"]
    assert 0.0 <= record["metrics"]["accuracy"]["value"] <= 1.0
    path = out / "digits-mnist" / "dp-mean-image" / "eps1" / "seed0"
    assert (path / "record.json").exists() and (path / "samples.png").exists()
