"""Every generator run keeps its synthetic set; `dpbench evaluate RUN_DIR` re-scores it without sampling again."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from dpbench.cli import main
from dpbench.run.records import read_records, validate_record
from tests.conftest import mock_method_installed


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, shared_cache, mock_method_site):
    """A generator run of the mock method (real DP steps, 20 random images per class), scored on the shared cache."""
    root = tmp_path_factory.mktemp("evaluate")
    with mock_method_installed(mock_method_site) as method:
        result = CliRunner().invoke(main, ["run", "--method", method, "--pair", "digits-mnist", "--eps", "1",
                                           "--preset", "smoke", "--set", "samples_per_class=20", "--evaluator",
                                           "accuracy", "--out", str(root / "runs"), "--cache-dir", str(shared_cache),
                                           "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    directory = next((root / "runs").rglob("record.json")).parent
    return root, directory, record


def test_generator_run_saves_what_it_scored(smoke_run):
    _, directory, record = smoke_run
    section = record["synthetic"]
    assert section["file"] == "synthetic.npz" and section["n"] == 200 and section["shape"] == [1, 28, 28]
    with np.load(directory / "synthetic.npz") as arrays:
        assert arrays["images"].dtype == np.uint8 and arrays["images"].shape == (200, 1, 28, 28)
        assert arrays["labels"].dtype == np.int64 and sorted(set(arrays["labels"].tolist())) == list(range(10))


def test_evaluate_rescores_from_the_file_and_updates_the_record(smoke_run, shared_cache):
    root, directory, record = smoke_run
    before = record["metrics"]["accuracy"]["value"]
    result = CliRunner().invoke(main, ["evaluate", str(directory), "--evaluator", "accuracy",
                                       "--cache-dir", str(shared_cache), "--json"])
    assert result.exit_code == 0, result.output
    updated = json.loads(result.stdout)
    assert updated["metrics"]["accuracy"]["value"] == pytest.approx(before)  # same samples, same seed
    assert len(updated["rescored"]) == 1 and "accuracy" in updated["rescored"][0]["evaluators"]
    on_disk = read_records(root / "runs")[0]
    validate_record({k: v for k, v in on_disk.items() if k != "_path"})
    assert on_disk["rescored"] == updated["rescored"]


def test_evaluate_refuses_a_changed_synthetic_set(smoke_run, tmp_path):
    _, directory, _ = smoke_run
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("record.json", "synthetic.npz"):
        (copy / name).write_bytes((directory / name).read_bytes())
    with np.load(copy / "synthetic.npz") as arrays:
        images, labels = arrays["images"].copy(), arrays["labels"]
    images[0] = 255 - images[0]
    np.savez_compressed(copy / "synthetic.npz", images=images, labels=labels)
    before = (copy / "record.json").read_text()
    result = CliRunner().invoke(main, ["evaluate", str(copy), "--evaluator", "accuracy"])
    assert result.exit_code == 2 and "does not match the digest" in result.output
    assert (copy / "record.json").read_text() == before


def test_evaluate_names_a_folder_without_a_record(tmp_path):
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path)])
    assert result.exit_code == 2 and "holds no record.json" in result.output


def test_real_data_ceiling_trains_on_as_many_real_images_per_class(tmp_path):
    import torch

    from dpbench.builtins.pair_digits_mnist import load_digits_mnist
    from dpbench.eval.downstream import real_data_accuracy

    data = load_digits_mnist()
    labels = torch.tensor([0] * 30 + [1] * 10 + [2] * 5)
    pair = type("Pair", (), {"name": "digits-mnist", "classifier": "cnn", "channels": 1, "image_size": 28,
                             "num_classes": 10})()
    value = real_data_accuracy(pair, data.private_train, data.private_test, labels, preset="smoke", seed=0,
                               device=torch.device("cpu"), cache_dir=tmp_path)
    entry = json.loads(next((tmp_path / "real_data").glob("*.json")).read_text())
    assert entry["n"] == 45 and entry["key"]["counts"][:4] == [30, 10, 5, 0]
    assert 0.0 <= value <= 1.0 and entry["accuracy"] == value
