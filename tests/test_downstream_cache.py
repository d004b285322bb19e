"""The accuracy score is the mean of N seeded classifier fits; the cached reference accuracies are keyed by the data
they were measured on (not only by its size) and by N."""
import json
import math
import statistics

import pytest
import torch

from dpbench.api.registry import load_registry
from dpbench.data.types import ImageSet
from dpbench.eval.downstream import (CLASSIFIER_FITS, fit_seeds, public_only_accuracy, public_only_scores,
                                     real_data_accuracy, score_fits)
from dpbench.storage import tensor_digest


def _set(seed, n=20):
    g = torch.Generator().manual_seed(seed)
    return ImageSet((torch.rand(n, 1, 28, 28, generator=g) * 255).to(torch.uint8), torch.arange(n) % 10)


def test_a_changed_test_split_is_a_new_cache_entry(tmp_path):
    pair = load_registry().pair("digits-mnist")
    train, test_a, test_b = _set(0), _set(1), _set(2)
    common = dict(preset="smoke", seed=0, device=torch.device("cpu"), cache_dir=tmp_path)
    public_only_accuracy(pair, train, test_a, **common)
    public_only_accuracy(pair, train, test_b, **common)
    assert len(list((tmp_path / "public_only").iterdir())) == 2
    labels = torch.arange(10).repeat_interleave(2)
    real_data_accuracy(pair, train, test_a, labels, **common)
    real_data_accuracy(pair, train, test_b, labels, **common)
    assert len(list((tmp_path / "real_data").iterdir())) == 2


def test_cache_entries_are_private_to_the_user(tmp_path):
    import stat

    from dpbench.storage import atomic_torch_save

    pair = load_registry().pair("digits-mnist")
    public_only_accuracy(pair, _set(0), _set(1), preset="smoke", seed=0, device=torch.device("cpu"), cache_dir=tmp_path)
    atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "pretrain" / "entry.pt")
    for folder in ("public_only", "pretrain"):
        assert stat.S_IMODE((tmp_path / folder).stat().st_mode) == 0o700
        for entry in (tmp_path / folder).iterdir():
            assert stat.S_IMODE(entry.stat().st_mode) == 0o600, entry


def test_a_pretrain_entry_whose_recorded_key_differs_is_rebuilt_not_reused(tmp_path, monkeypatch):
    from dpbench.models.unet import UNetConfig
    from dpbench.pretrain import pixel_pretraining as pretrain_unet
    from dpbench.pretrain.pixel_pretraining import PretrainConfig, pretrain_cache_path, pretrained_unet

    public = _set(0, n=16)
    config = UNetConfig.for_images(28, 1, 10, base_channels=8)
    train = PretrainConfig(steps=2, batch_size=8)
    calls = []
    real_train = pretrain_unet._train
    monkeypatch.setattr(pretrain_unet, "_train", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    common = dict(pair_name="fixture", seed=0, cache_dir=tmp_path, device="cpu")
    pretrained_unet(public, config, train, **common)
    pretrained_unet(public, config, train, **common)
    assert len(calls) == 1  # the second call reused the entry
    path = pretrain_cache_path("fixture", config, train, 0, tmp_path, public_digest=tensor_digest(public.images,
                                                                                                  public.labels))
    entry = torch.load(path, weights_only=True)
    entry["meta"]["key"]["public_digest"] = "someone-else's-data"
    torch.save(entry, path)
    pretrained_unet(public, config, train, **common)
    assert len(calls) == 2  # the tampered entry was rebuilt


def test_a_score_is_the_mean_of_nested_seeded_fits_each_kept(tmp_path):
    pair = load_registry().pair("digits-mnist")
    train, test = _set(0, n=40), _set(1)
    cpu = torch.device("cpu")
    assert fit_seeds(3, 3) == fit_seeds(3, 5)[:3] and len(set(fit_seeds(3, 5))) == 5  # N's fits are N + 1's first
    three = score_fits(pair, train, test, preset="smoke", seed=3, device=cpu, n_fits=3)
    one = score_fits(pair, train, test, preset="smoke", seed=3, device=cpu, n_fits=1)
    assert len(three.fits) == 3 and three.fits[:1] == one.fits
    assert three.mean == statistics.fmean(three.fits)
    assert three.stderr == statistics.stdev(three.fits) / math.sqrt(3) and one.stderr is None
    assert three.extra() == {"fits": list(three.fits), "n_fits": 3, "stderr": three.stderr}
    reference = public_only_scores(pair, train, test, preset="smoke", seed=3, device=cpu, cache_dir=tmp_path)
    assert len(reference.fits) == CLASSIFIER_FITS["smoke"]
    [entry] = [json.loads(p.read_text()) for p in (tmp_path / "public_only").iterdir()]
    assert entry["fits"] == list(reference.fits) and entry["key"]["fits"] == CLASSIFIER_FITS["smoke"]
    assert entry["accuracy"] == reference.mean
    assert public_only_scores(pair, train, test, preset="smoke", seed=3, device=cpu, cache_dir=tmp_path) == reference


def test_no_fit_is_refused():
    with pytest.raises(ValueError, match="n_fits=0"):
        fit_seeds(0, 0)
