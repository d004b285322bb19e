"""Each real pair runs end to end with the smoke preset on tiny fixtures in the datasets' own formats."""
import json

import pytest
import torch
from click.testing import CliRunner

from dpbench.builtins import real_pair_specs as rp
from dpbench.cli import main
from dpbench.models.unet import UNetConfig
from dpbench.pretrain.pixel_pretraining import PretrainConfig, PublicStream, pretrain_cache_path, pretrained_unet
from tests.fixtures_real import write_all


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("data"))


@pytest.mark.slow  # a real dp-loda run per pair
@pytest.mark.parametrize("pair, evaluators", [
    ("svhn-mnist", ["accuracy"]),
    ("imagenet32-cifar10", ["accuracy"]),
    ("imagenet32-cifar10-1pct", ["accuracy"]),
    ("imagenet-celeba", ["fid", "accuracy"]),
    ("imagenet-celeba-64", ["accuracy"]),
])
def test_smoke_run_on_fixtures(root, tmp_path, shared_cache, pair, evaluators):
    args = ["run", "--method", "dp-loda", "--pair", pair, "--eps", "10", "--preset", "smoke", "--data-root", str(root),
            "--out", str(tmp_path / "runs"), "--cache-dir", str(shared_cache), "--json"]
    for name in evaluators:
        args += ["--evaluator", name]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["status"] == "completed" and record["privacy"]["epsilon"] <= 10
    expected = {"accuracy"} | ({"fid", "kid"} if "fid" in evaluators else set())
    assert expected <= set(record["metrics"])
    if pair.startswith("imagenet-celeba"):
        # ImageNet labels are not CelebA's classes: no public-only classifier reference, FID is reported
        assert "accuracy_public_only" not in record["metrics"]
        assert "fid" not in evaluators or record["metrics"]["fid"]["value"] > 0
    else:
        assert "accuracy_public_only" in record["metrics"]


def test_missing_data_exits_2_naming_the_paths_and_writes_nothing(tmp_path):
    result = CliRunner().invoke(main, ["run", "--method", "dp-loda", "--pair", "svhn-mnist", "--eps", "10",
                                       "--data-root", str(tmp_path / "nothing"), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "train_32x32.mat" in result.output and "train-images-idx3-ubyte" in result.output
    assert not (tmp_path / "runs").exists()


def test_two_phase_pretraining_uses_the_stream_then_the_labelled_split(root, tmp_path):
    data = rp.IMAGENET32_CIFAR10.load(str(root))
    seen = []

    def chunks(chunk_size, seed):
        for chunk in data.info["public_unconditional"](chunk_size=chunk_size, seed=seed):
            seen.append(len(chunk))
            yield chunk

    config = UNetConfig.for_images(32, 3, 10, base_channels=8, groups=4)
    train = PretrainConfig(steps=4, batch_size=8)
    kw = dict(pair_name="imagenet32-cifar10", seed=0, cache_dir=tmp_path, device="cpu")
    two_phase = PublicStream("imagenet32", chunks, conditional_after=True)
    pretrained_unet(data.public_train, config, train, stream=two_phase, **kw)
    assert seen  # phase 1 read the unconditional stream
    one_phase = PublicStream("imagenet32", chunks, conditional_after=False)
    paths = {pretrain_cache_path("imagenet32-cifar10", config, train, 0, tmp_path, stream=s) for s in (None, two_phase, one_phase)}
    assert len(paths) == 3  # the phases are part of the cache key


def test_unconditional_only_pretraining_never_reads_the_public_labels(tmp_path):
    from dpbench.data.types import ImageSet

    images = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    out_of_range = ImageSet(images, torch.full((16,), 999, dtype=torch.long))  # e.g. ImageNet ids for a 2-class pair
    stream = PublicStream("toy", lambda chunk_size, seed: iter([ImageSet(images, torch.zeros(16, dtype=torch.long))]),
                          conditional_after=False)
    config = UNetConfig.for_images(8, 1, 2, base_channels=8, groups=4)
    model = pretrained_unet(out_of_range, config, PretrainConfig(steps=3, batch_size=8), pair_name="toy", seed=0,
                            cache_dir=tmp_path, device="cpu", stream=stream)
    assert model.null_class == 2


def test_a_failed_download_exits_2_and_writes_nothing(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets as tvd

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(tvd, "SVHN", offline)
    monkeypatch.setattr(tvd, "MNIST", offline)
    result = CliRunner().invoke(main, ["run", "--method", "dp-loda", "--pair", "svhn-mnist", "--eps", "10", "--download",
                                       "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "could not download" in result.output and "dpbench data check --pair svhn-mnist" in result.output
    assert not (tmp_path / "runs").exists()
