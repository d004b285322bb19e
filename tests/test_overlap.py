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


def _fixture(size: int = 28):
    public, private_train, private_test = _blobs(300, 0, size), _blobs(200, 1, size), _blobs(100, 2, size)
    planted_public = {10: (3, _shift), 20: (50, _rescale), 30: (199, _jpeg)}  # private_train index: (public, edit)
    for train_index, (public_index, edit) in planted_public.items():
        private_train[train_index] = edit(public[public_index])
    private_test[7] = private_train[100].clone()  # an exact copy across the private splits
    private_train[150] = _shift(private_train[151])  # a near-copy inside private train
    return {"public": public, "private_train": private_train, "private_test": private_test}, planted_public


@pytest.mark.parametrize("size", [28, 64])  # 64 px images are area-reduced to 32 px before hashing
def test_planted_near_duplicates_are_found_and_nothing_else(size):
    splits, planted = _fixture(size)
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


def test_products_cover_every_pair_once_in_bounded_chunks():
    from dpbench.data.overlap import _products

    a_start, a_size, b_start, b_size = [0, 5, 9, 40], [5, 4, 31, 1], [0, 3, 10, 0], [3, 7, 50, 1]
    seen, chunk = [], 16
    for g, a, b in _products(a_start, a_size, b_start, b_size, chunk):
        assert len(g) <= 2 * chunk
        seen += list(zip(g.tolist(), a.tolist(), b.tolist()))
    expected = [(g, a_start[g] + i, b_start[g] + j) for g in range(4) for i in range(a_size[g]) for j in range(b_size[g])]
    assert sorted(seen) == sorted(expected)


def _near_identical(n: int, seed: int) -> torch.Tensor:
    """`n` copies of one shape, each with a little noise: thousands of near-duplicates of one another."""
    base = _blobs(1, 0)[0].float()
    noise = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 3
    return (base + noise).round().clamp(0, 255).to(torch.uint8)


def test_thousands_of_identical_images_stay_bounded_and_report_capping(caplog, tmp_path, monkeypatch):
    identical = _blobs(1, 0).expand(3000, 1, 28, 28).contiguous()
    splits = {"public": identical[:2000], "private_train": identical.clone(), "private_test": identical[:500].clone()}
    began = time.perf_counter()
    result = overlap_counts(splits, max_verified=20_000)
    assert time.perf_counter() - began < 30
    train_self, public_train = (result["comparisons"][k] for k in ("private_train~private_train", "public~private_train"))
    assert train_self["hash_candidates"] == 3000 * 2999 // 2  # counted exactly without listing the pairs
    assert public_train["hash_candidates"] == 2000 * 3000
    for name, c in result["comparisons"].items():
        assert c["capped"] and name in result["capped"]
        assert c["verified_candidates"] == 20_000 and c["near_duplicates"] == 20_000  # a lower bound, said so
        assert len(c["examples"]) == 5 and not c["hash_candidates_capped"]
    assert train_self["examples"][0][:2] == [0, 1]
    monkeypatch.setattr(overlap_module, "overlap_counts", lambda *a, **k: result)
    with caplog.at_level("WARNING", logger="dpbench.data.overlap"):
        summary = overlap_module.overlap_summary(cached_overlap("identical", splits, "digest", tmp_path))
    assert summary["public~private_train"] == 20_000 and "capped" in caplog.text and "lower bounds" in caplog.text
    from dpbench.data import check as check_module

    monkeypatch.setattr(check_module, "splits_and_digest", lambda spec, root: (splits, "digest"))
    spec = type("Spec", (), {"name": "identical", "check_files": None})()
    entry = check_module.check_pair(spec, None, tmp_path, warn=print)
    assert entry["overlap_capped"]["public~private_train"] == {"verified_candidates": 20_000,
                                                               "hash_candidates": 6_000_000,
                                                               "hash_candidates_capped": False}
    text = check_module.check_text(entry, None)  # what `dpbench data check` prints: the capping, not just a count
    assert "public~private_train >= 20000" in text
    assert "capped: public~private_train verified 20,000 of 6,000,000 hash candidates" in text


def test_a_cluster_of_distinct_near_identical_hashes_stops_at_the_bucket_pair_budget():
    rng = np.random.default_rng(0)
    base = np.uint64(0x0123456789ABCDEF)
    flips = rng.integers(0, 64, size=(4000, 2)).astype(np.uint64)
    hashes = base ^ (np.uint64(1) << flips[:, 0]) ^ (np.uint64(1) << flips[:, 1])  # all within 4 bits of each other
    assert len(np.unique(hashes)) > 1000
    thumbs = np.ones((4000, 256), dtype=np.float32) / 16  # every thumbnail alike: every candidate verifies
    counts = overlap_module._compare(hashes, None, thumbs, thumbs, 4, 0.98, max_hash_pairs=50_000, max_verified=10_000)
    assert counts["hash_candidates_capped"] and counts["capped"]
    assert counts["hash_pairs_examined"] < 50_000 + 2 * overlap_module.PAIR_CHUNK
    assert counts["verified_candidates"] == counts["near_duplicates"] == 10_000
    assert counts["hash_candidates"] < 4000 * 3999 // 2  # a lower bound: not every bucket pair was examined
    uncapped = overlap_module._compare(hashes[:500], None, thumbs, thumbs, 4, 0.98, 10**9, 10**9)
    assert uncapped["hash_candidates"] == uncapped["near_duplicates"] == 500 * 499 // 2 and not uncapped["capped"]


def test_uncapped_counts_match_the_pairwise_definition():
    splits, _ = _fixture()
    cluster = _near_identical(40, 5)
    splits["private_train"][:40], splits["public"][:40] = cluster, _near_identical(40, 6)
    result = overlap_counts(splits)["comparisons"]
    for left, right in (("public", "private_train"), ("private_train", None)):
        a, b = perceptual_hashes(splits[left]), perceptual_hashes(splits[right or left])
        distance = hamming(a[:, None], b[None, :])
        ok = distance <= 4
        if right is None:
            ok &= np.triu(np.ones_like(ok), k=1).astype(bool)
        i, j = np.nonzero(ok)
        correlation = (overlap_module.thumbnails(splits[left][torch.from_numpy(i)])
                       * overlap_module.thumbnails(splits[right or left][torch.from_numpy(j)])).sum(1).numpy()
        counts = result[f"{left}~{right or left}"]
        assert counts["hash_candidates"] == len(i) and not counts["capped"]
        assert counts["near_duplicates"] == int((correlation >= 0.98).sum())
        assert counts["images_matched"] == len(set(j[correlation >= 0.98].tolist()))
        assert counts["examples"] == [[int(x), int(y), int(distance[x, y])] for x, y in zip(i, j)
                                      if correlation[(i == x) & (j == y)][0] >= 0.98][:5]
