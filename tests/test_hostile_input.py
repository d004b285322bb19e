"""Hostile input: every case fails with a clear error naming the input, the documented exit code (2: bad input,
1: the run failed) and nothing half-written. `pytest -m hostile` runs them; the terminal summary lists each case
in plain words with PASS or FAIL (tests/conftest.py)."""
import json
import math

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpbench.cli import main
from tests.conftest import install_fake_distribution

pytestmark = pytest.mark.hostile

HOSTILE_PLUGIN = '''
from dataclasses import dataclass

import torch
from torch import nn
import dpbench
from dpbench.builtins.pair_digits_mnist import load_digits_mnist
from dpbench.data.types import ImageSet, PairData


def _loss(model_fn, example):
    return model_fn(example["x"].reshape(1, -1)).square().sum()


@dataclass(frozen=True)
class HostileSettings:
    output: str = dpbench.setting("nan", "what to return", choices=("nan", "artifact", "float"))
    samples_per_class: int = dpbench.setting(2, "samples per class", minimum=1)


class Hostile(dpbench.Method):
    name = "hostile"
    description = "returns what it is told to"
    reference = "tests"
    produces = "generator"
    trains_on_private = True

    Settings = HostileSettings

    def settings(self, preset, pair):
        return HostileSettings()

    def train(self, ctx, settings):
        model = nn.Linear(784, 1)
        trainer = ctx.private_trainer(model, _loss, lambda e, g: e, dpbench.DPSettings(expected_batch_size=64, steps=2,
                                      max_grad_norm=1.0), prepare=lambda x: x.float().flatten(1) / 255)
        trainer.run(torch.optim.SGD(model.parameters(), lr=0.1))
        artifact = "not a generator" if settings.output == "artifact" else Samples(settings.output)
        return dpbench.MethodResult(artifact=artifact, trainable_parameters=785, total_parameters=785)


class Samples:
    def __init__(self, kind):
        self.kind = kind

    def sample(self, labels, seed, progress=None):
        value = float("nan") if self.kind == "nan" else 0.5
        return torch.full((len(labels), 1, 28, 28), value)


def _bad_pair(kind):
    def load(data_root):
        data = load_digits_mnist()
        if kind == "shape":
            images = data.private_train.images[:, :, :20, :20].contiguous()
            return PairData(data.public_train, ImageSet(images, data.private_train.labels), data.private_test)
        if kind == "labels":
            return PairData(data.public_train, ImageSet(data.private_train.images, data.private_train.labels + 5),
                            data.private_test)
        return {"not": "pair data"}
    return load


@dpbench.hookimpl
def dpbench_register_methods(register):
    register(Hostile())


@dpbench.hookimpl
def dpbench_register_pairs(register):
    for kind in ("shape", "labels", "type"):
        register(dpbench.PairSpec(name=f"bad-{kind}", description="hostile", image_size=28, channels=1,
                                  num_classes=10, load=_bad_pair(kind)))
'''


@pytest.fixture
def hostile(plugin_path):
    install_fake_distribution(plugin_path, "dpbench-hostile", "0.1.0", {"hostile": "thirdparty_hostile"},
                              {"thirdparty_hostile": HOSTILE_PLUGIN})


def _run(tmp_path, cache, *args):
    return CliRunner().invoke(main, ["run", "--preset", "smoke", "--out", str(tmp_path / "runs"), "--cache-dir",
                                     str(cache), *args])


def _nothing_written(tmp_path) -> bool:
    return not (tmp_path / "runs").exists() or not any(p.is_file() for p in (tmp_path / "runs").rglob("*"))


@pytest.mark.hostile_case("CLI flags with NaN, negative, zero-width and huge values exit 2 and write nothing")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from([
    ("--eps", "nan"), ("--eps", "-1"), ("--eps", "-inf"), ("--delta", "nan"), ("--delta", "-1e-5"),
    ("--delta", "2"), ("--delta", "0"), ("--seed", "-5"), ("--seed", "1e3"), ("--set", "lr=nan"),
    ("--set", "lr=1e400"), ("--set", "lr=-1"), ("--set", "steps=-3"), ("--set", "steps=1e99"),
    ("--set", "batch_size=0"), ("--set", "scope.rank=nan"), ("--set", "nosuchkey=1"), ("--checkpoint-every", "0"),
    ("--rng", "urandom")]))
def test_hostile_cli_flags_exit_2_naming_the_input(tmp_path, shared_cache, flag):
    option, value = flag
    args = ["--method", "dp-loda", "--pair", "digits-mnist"]
    args += [option, value] if option == "--eps" else ["--eps", "1", option, value]
    result = _run(tmp_path, shared_cache, *args)
    assert result.exit_code == 2, (flag, result.output)
    named = value.split("=")[0] if option == "--set" else option.lstrip("-").split("-")[0]
    assert named.lower() in result.output.lower() or value in result.output, (flag, result.output)
    assert _nothing_written(tmp_path)


@pytest.mark.hostile_case("a third-party pair returning images of the wrong shape, labels out of range or not a "
                          "PairData exits 2 naming the pair")
@pytest.mark.parametrize("kind", ["shape", "labels", "type"])
def test_a_pair_returning_bad_data_is_refused(hostile, tmp_path, shared_cache, kind):
    result = _run(tmp_path, shared_cache, "--method", "dp-sgd", "--pair", f"bad-{kind}", "--eps", "1")
    assert result.exit_code == 2, result.output
    assert f"bad-{kind}" in result.output
    assert _nothing_written(tmp_path)


@pytest.mark.hostile_case("a method returning NaN (float) samples or the wrong artifact is a failed run (exit 1) "
                          "with the reason, no samples and no synthetic set (its training curves stay)")
@pytest.mark.parametrize("output, reason", [
    ("nan", "expected uint8"),
    pytest.param("float", "expected uint8", marks=pytest.mark.slow),  # whole runs: the nan case keeps the inner loop's
    pytest.param("artifact", "artifact", marks=pytest.mark.slow)])
def test_a_method_returning_bad_output_fails_cleanly(hostile, tmp_path, shared_cache, output, reason):
    result = _run(tmp_path, shared_cache, "--method", "hostile", "--pair", "digits-mnist", "--eps", "1",
                  "--evaluator", "accuracy", "--set", f"output={output}")
    assert result.exit_code == 1, result.output
    (path,) = (tmp_path / "runs").rglob("record.json")
    record = json.loads(path.read_text())
    assert record["status"] == "failed" and reason in record["error"]["message"]
    # its training curves stay, to tell a diverging run from a broken one; samples never
    assert {p.name for p in path.parent.glob("*.png")} <= {"curves.png"} and not list(path.parent.glob("*.npz"))
    assert not (path.parent / "samples.png").exists()
    assert not list((tmp_path / "runs").rglob("*.tmp"))


@pytest.mark.hostile_case("a record edited to claim a smaller ε is left out of the leaderboard and listed with "
                          "the reason")
def test_an_edited_record_is_left_out(tmp_path):
    from tests.test_records import _record, _write

    from dpbench.report.leaderboard import build_leaderboard

    honest, edited = _record("dp-loda", 10.0, 0, 50.0, 0.8), _record("dp-lora", 10.0, 0, 50.0, 0.8)
    edited["privacy"]["epsilon"] = 0.5  # claims less than its ledger spends
    _write(tmp_path / "runs", honest)
    _write(tmp_path / "runs", edited)
    with pytest.warns(UserWarning, match="left out 1 record"):
        text = build_leaderboard(tmp_path / "runs", tmp_path / "board").read_text()
    tables, left_out = text.split("## Left out")
    assert "dp-lora" not in tables and "dp-lora" in left_out and "recomputes to" in left_out
    assert math.isfinite(0.5)


def _fixture_files(root):
    """One file of each real-data format, written by the test fixtures, and how each is read."""
    from dpbench.data.readers import cifar_pickle, imagenet32_npz, mnist_idx, svhn_mat
    from tests.fixtures_real import write_cifar10, write_imagenet32, write_mnist, write_svhn

    write_mnist(root / "mnist", gz=False)
    write_mnist(root / "mnist-gz")
    write_svhn(root / "svhn")
    write_cifar10(root / "cifar")
    write_imagenet32(root / "in32", compressed=False)
    write_imagenet32(root / "in32z", compressed=True)
    return {
        "MNIST idx": (root / "mnist" / "train-images-idx3-ubyte", lambda: mnist_idx.load_mnist(root / "mnist", "train")),
        "MNIST idx.gz": (root / "mnist-gz" / "train-labels-idx1-ubyte.gz",
                         lambda: mnist_idx.load_mnist(root / "mnist-gz", "train")),
        "SVHN .mat": (root / "svhn" / "train_32x32.mat", lambda: svhn_mat.load_svhn(root / "svhn")),
        "CIFAR-10 pickle": (root / "cifar" / "data_batch_1", lambda: cifar_pickle.read_batch(root / "cifar" / "data_batch_1")),
        "ImageNet32 npz": (root / "in32" / "Imagenet32_val_npz" / "val_data.npz",
                           lambda: imagenet32_npz.read_batch(root / "in32" / "Imagenet32_val_npz" / "val_data.npz")),
        "ImageNet32 npz (deflated)": (root / "in32z" / "Imagenet32_val_npz" / "val_data.npz",
                                      lambda: imagenet32_npz.read_batch(root / "in32z" / "Imagenet32_val_npz" / "val_data.npz")),
    }


@pytest.mark.slow  # 40 corrupted files of six formats; the full suite keeps it
@pytest.mark.hostile_case("every real-data format, truncated at a random byte or with random bytes flipped, "
                          "raises an error naming the file (never another exception)")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(["MNIST idx", "MNIST idx.gz", "SVHN .mat", "CIFAR-10 pickle", "ImageNet32 npz",
                            "ImageNet32 npz (deflated)"]),
       cut=st.floats(0.0, 0.98), flip=st.booleans(), seed=st.integers(0, 2**16))
def test_corrupted_dataset_files_name_the_file(tmp_path_factory, fmt, cut, flip, seed):
    import numpy as np

    root = tmp_path_factory.mktemp("formats")
    path, read = _fixture_files(root)[fmt]
    data = bytearray(path.read_bytes())
    if flip:  # overwrite the first 32 bytes (headers, magic numbers) with random ones
        data[:32] = np.random.default_rng(seed).integers(0, 256, 32, dtype=np.uint8).tobytes()
    else:
        data = data[: int(len(data) * cut)]
    path.write_bytes(bytes(data))
    try:
        read()
    except ValueError as exc:  # CorruptFileError is a ValueError; a gzip error is re-raised as one too
        assert path.name in str(exc), (fmt, str(exc))
