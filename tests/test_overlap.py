"""The overlap check finds planted near-duplicates between splits and stays quiet on distinct images."""
import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from dpbench.cli import main
from dpbench.data import overlap as overlap_module
from dpbench.data.overlap import cached_overlap, hamming, near_duplicates, overlap_counts, perceptual_hashes


def _blobs(n: int, seed: int, size: int = 28) -> torch.Tensor:
    """Distinct smooth random shapes on a dark background, uint8 (n, 1, size, size)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 1, 7, 7, generator=g)
    smooth = F.interpolate(noise, size=(size - 8, size - 8), mode="bicubic", align_corners=False)
    shapes = ((smooth - 0.55).clamp(min=0) * 600).clamp(0, 255)
    return F.pad(shapes, (4, 4, 4, 4)).to(torch.uint8)  # a dark margin, as MNIST digits have


def _shift(image):
    return torch.roll(image, shifts=(1, 1), dims=(1, 2))


def _rescale(image):
    small = F.interpolate(image[None].float(), scale_factor=0.9, mode="bilinear", antialias=True)[0]
    pad = image.shape[-1] - small.shape[-1]
    return F.pad(small, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)).round().clamp(0, 255).to(torch.uint8)


def _jpeg(image):
    buffer = io.BytesIO()
    Image.fromarray(image[0].numpy()).save(buffer, format="JPEG", quality=75)
    return torch.from_numpy(np.array(Image.open(buffer)))[None]


def _fixture():
    public, private_train, private_test = _blobs(300, 0), _blobs(200, 1), _blobs(100, 2)
    planted_public = {10: (3, _shift), 20: (50, _rescale), 30: (199, _jpeg)}  # private_train index: (public, edit)
    for train_index, (public_index, edit) in planted_public.items():
        private_train[train_index] = edit(public[public_index])
    private_test[7] = private_train[100].clone()  # an exact copy across the private splits
    private_train[150] = _shift(private_train[151])  # a near-copy inside private train
    return {"public": public, "private_train": private_train, "private_test": private_test}, planted_public


def test_planted_near_duplicates_are_found_and_nothing_else():
    splits, planted = _fixture()
    result = overlap_counts(splits)["comparisons"]
    found = {(a, b) for a, b, _ in result["public~private_train"]["examples"]}
    assert found == {(public_index, train_index) for train_index, (public_index, _) in planted.items()}
    assert result["public~private_train"]["near_duplicates"] == 3
    assert result["public~private_test"]["near_duplicates"] == 0
    assert [e[:2] for e in result["private_train~private_test"]["examples"]] == [[100, 7]]
    assert [e[:2] for e in result["private_train~private_train"]["examples"]] == [[150, 151]]


def test_the_banded_index_finds_every_pair_within_the_threshold():
    rng = np.random.default_rng(0)
    left = rng.integers(0, 2**63, size=300, dtype=np.uint64)
    right = left.copy()
    flips = rng.integers(0, 64, size=(300, 4))
    for i, bits in enumerate(flips):  # up to 4 flipped bits per hash
        for bit in bits[: i % 5]:
            right[i] ^= np.uint64(1) << np.uint64(int(bit))
    brute = {(i, j) for i in range(300) for j in range(300) if hamming(left[i], right[j]) <= 4}
    assert {(m.left, m.right) for m in near_duplicates(left, right, 4)} == brute
    assert all((i, i) in brute for i in range(300))


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        perceptual_hashes(torch.zeros(2, 1, 8, 8))


def test_the_result_is_cached_by_the_data_digest(tmp_path, monkeypatch):
    splits, _ = _fixture()
    first = cached_overlap("fixture", splits, "digest-a", tmp_path)
    monkeypatch.setattr(overlap_module, "overlap_counts", lambda *a, **k: pytest.fail("recomputed a cached result"))
    assert cached_overlap("fixture", splits, "digest-a", tmp_path) == first
    with pytest.raises(pytest.fail.Exception):
        cached_overlap("fixture", splits, "digest-b", tmp_path)  # other data: a new entry


def test_parallel_runs_compute_a_missing_entry_once(tmp_path, monkeypatch):
    splits, _ = _fixture()
    real, calls = overlap_module.overlap_counts, []

    def slow_counts(*args, **kwargs):
        calls.append(1)
        time.sleep(0.5)  # long enough for the other thread to find the entry missing
        return real(*args, **kwargs)

    monkeypatch.setattr(overlap_module, "overlap_counts", slow_counts)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: cached_overlap("fixture", splits, "digest-a", tmp_path), range(2)))
    assert results[0] == results[1] and len(calls) == 1


def test_the_cli_reports_the_embedded_pair(tmp_path):
    result = CliRunner().invoke(main, ["data", "overlap", "--pair", "digits-mnist", "--cache-dir", str(tmp_path),
                                       "--json"])
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.stdout)
    assert report["comparisons"]["public~private_train"]["near_duplicates"] == 0
    assert set(report["comparisons"]) == {"public~private_train", "public~private_test", "private_train~private_test",
                                          "private_train~private_train"}
