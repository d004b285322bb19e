"""Near-duplicates between a pair's splits, by perceptual hash.

Duplicates between public and private data (ImageNet and CIFAR-10 share images), or between private train
and private test, void what a run claims: a "private" image was seen in pre-training, or a test image was
trained on. Inception features would be too slow for the large public sets on a CPU (1.28M ImageNet32 images
at 20-25 images/s is over 14 hours), so the check uses a DCT perceptual hash (pHash: grey, 32x32, the 8x8
lowest DCT frequencies against their median, 64 bits), computed after centring and scaling each image by the
moments of its content so that small shifts and rescales keep the hash, and a banded index: with a Hamming threshold of
`threshold`, the hash is cut into `threshold + 1` bands, and two hashes within the threshold agree exactly on
at least one band (pigeonhole), so only images that share a band bucket are compared.

Memory and time are bounded whatever the data: identical hashes are collapsed first (a hash candidate between two
distinct hashes stands for the product of their image counts, so `hash_candidates` is counted without listing
image pairs); the index's bucket pairs are streamed in numpy chunks of about `PAIR_CHUNK` (at most twice that),
each pair counted in the first band it agrees on; at most `MAX_HASH_PAIRS` bucket pairs are examined and at most `MAX_VERIFIED`
candidate image pairs are verified per comparison, and only `MAX_EXAMPLES` examples are kept. Where a cap is
reached the comparison says so (`capped`, `hash_candidates_capped`) and its counts are lower bounds. Full-size
svhn-mnist files of tiled, shifted digits (6.6 million candidates, 4.7 million inside MNIST train) once took a
24 GB machine down here, listing and gathering every candidate at once; the whole `data check` now takes about
30 s and 2.8 GB there, most of both in loading (benchmarks/RESULTS.md, issue 24).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

HASH_SIZE = 32  # the image is reduced to 32x32 grey before the DCT
LOW_FREQUENCIES = 8  # 8x8 lowest frequencies -> 64 bits
DEFAULT_THRESHOLD = 4  # Hamming distance <= 4 of 64 bits makes a candidate (recall: docs/privacy.md)
MIN_CORRELATION = 0.98  # a candidate is a near-duplicate when its 16x16 normalised thumbnails correlate this well
THUMBNAIL = 16
SPLITS = (("public", "private_train"), ("public", "private_test"), ("private_train", "private_test"))
PAIR_CHUNK = 1 << 20  # pairs per streamed chunk (a few tens of MB of index arrays)
VERIFY_CHUNK = 1 << 16  # image pairs whose thumbnails are compared at once (2 x 64 MB of float32 rows)
MAX_HASH_PAIRS = 100_000_000  # bucket pairs of distinct hashes examined per comparison
MAX_VERIFIED = 2_000_000  # candidate image pairs verified by thumbnail per comparison
MAX_EXAMPLES = 5  # verified near-duplicates kept as examples per comparison (the smallest (left, right))

log = logging.getLogger(__name__)


def _dct_matrix(n: int) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    matrix = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    matrix[0] /= math.sqrt(2)
    return matrix.float()


MOMENT_RADIUS = 0.5  # after normalisation the content's RMS radius is this share of the half-width


def moment_normalise(grey: torch.Tensor) -> torch.Tensor:
    """Translate and scale each grey image (N, 1, H, W) so that the mass of its content (the distance of each
    pixel from the image's median, i.e. from the background) is centred, with a fixed RMS radius. A plain pHash
    of a small digit loses a 1-pixel shift (recall 1% at distance <= 4 on MNIST); after this it keeps it."""
    n, _, h, w = grey.shape
    background = grey.flatten(1).median(dim=1).values.view(n, 1, 1, 1)
    mass = (grey - background).abs()[:, 0]
    total = mass.sum(dim=(1, 2)).clamp_min(1e-6)
    ys = torch.linspace(-1, 1, h).view(1, h, 1)
    xs = torch.linspace(-1, 1, w).view(1, 1, w)
    cy, cx = (mass * ys).sum(dim=(1, 2)) / total, (mass * xs).sum(dim=(1, 2)) / total
    radius = ((mass * ((ys - cy.view(n, 1, 1)) ** 2 + (xs - cx.view(n, 1, 1)) ** 2)).sum(dim=(1, 2)) / total).sqrt()
    scale = (radius / MOMENT_RADIUS).clamp(0.25, 4.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = scale, scale
    theta[:, 0, 2], theta[:, 1, 2] = cx, cy
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    return F.grid_sample(grey - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def perceptual_hashes(images: torch.Tensor, chunk: int = 8192) -> np.ndarray:
    """64-bit pHashes (uint64) of uint8 images (N, C, H, W), any size and channel count."""
    return hashes_and_thumbnails(images, chunk, with_thumbnails=False)[0]


def hashes_and_thumbnails(images: torch.Tensor, chunk: int = 8192, with_thumbnails: bool = True
                          ) -> tuple[np.ndarray, np.ndarray | None]:
    """pHashes (N,) uint64 and, with `with_thumbnails`, the `thumbnails` (N, 256) float32, from one
    moment-normalisation pass (the costly part of both)."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    dct = _dct_matrix(HASH_SIZE)
    weights = 1 << np.arange(63, -1, -1, dtype=np.uint64)
    out = np.empty(len(images), dtype=np.uint64)
    thumbs = np.empty((len(images), THUMBNAIL * THUMBNAIL), dtype=np.float32) if with_thumbnails else None
    for start in range(0, len(images), chunk):
        grey = moment_normalise(_grey(images[start:start + chunk]))
        small = F.interpolate(grey, size=(HASH_SIZE, HASH_SIZE), mode="bilinear", antialias=True,
                              align_corners=False)[:, 0]
        low = (dct @ small @ dct.T)[:, :LOW_FREQUENCIES, :LOW_FREQUENCIES].reshape(len(small), -1)
        median = low[:, 1:].median(dim=1, keepdim=True).values  # the DC term would dominate the median
        bits = (low > median).numpy().astype(np.uint64)
        out[start:start + len(bits)] = (bits * weights).sum(axis=1, dtype=np.uint64)
        if thumbs is not None:
            thumbs[start:start + len(bits)] = _thumbnails_of_normalised(grey).numpy()
    return out, thumbs


def _grey(images: torch.Tensor) -> torch.Tensor:
    """Grey (N, 1, h, w) float images, area-reduced to HASH_SIZE x HASH_SIZE when larger: the hash and the thumbnail
    are read at 32 and 16 px anyway, and the moment normalisation of 64 px images cost 4x (78 s of CPU for
    imagenet-celeba-64's 232,732 images, 21 s at 32 px)."""
    grey = images.float().mean(dim=1, keepdim=True)
    if grey.shape[-2] > HASH_SIZE or grey.shape[-1] > HASH_SIZE:
        grey = F.interpolate(grey, size=(HASH_SIZE, HASH_SIZE), mode="area")
    return grey


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per uint64 (numpy >= 2's bitwise_count, else unpackbits)."""
    x = np.asarray(x, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    flat = np.ascontiguousarray(x.reshape(-1))
    return np.unpackbits(flat.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1).reshape(x.shape).astype(np.int64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distances between uint64 hashes (broadcasting)."""
    return _popcount(np.bitwise_xor(a, b))


def _bands(threshold: int) -> list[tuple[int, int]]:
    """(shift, width) of `threshold + 1` bands covering the 64 bits."""
    n = threshold + 1
    edges = [round(64 * i / n) for i in range(n + 1)]
    return [(edges[i], edges[i + 1] - edges[i]) for i in range(n)]


@dataclass(frozen=True)
class Match:
    left: int
    right: int
    distance: int


def _products(a_start: np.ndarray, a_size: np.ndarray, b_start: np.ndarray, b_size: np.ndarray, chunk: int
              ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The Cartesian products of groups g, positions a_start[g] + [0, a_size[g]) x b_start[g] + [0, b_size[g]),
    as (g, a position, b position) int64 arrays of at most 2 * `chunk` pairs each, never all at once: small groups
    are expanded many at a time, a group larger than `chunk` in tiles."""
    a_start, a_size, b_start, b_size = (np.asarray(v, dtype=np.int64) for v in (a_start, a_size, b_start, b_size))
    area = a_size * b_size
    small = np.flatnonzero((area > 0) & (area <= chunk))
    if len(small):
        cum = np.cumsum(area[small])
        batch = (cum - area[small]) // chunk  # by where each group starts: a batch holds < chunk + one group
        edges = np.flatnonzero(np.diff(batch)) + 1
        for part in np.split(small, edges):
            yield _expand(part, a_start[part], a_size[part], b_start[part], b_size[part])
    for g in np.flatnonzero(area > chunk).tolist():
        rows = max(1, chunk // int(b_size[g]))
        cols = min(int(b_size[g]), chunk)
        for r in range(0, int(a_size[g]), rows):
            for c in range(0, int(b_size[g]), cols):
                one = np.array([g])
                yield _expand(one, a_start[one] + r, np.minimum(a_size[one] - r, rows), b_start[one] + c,
                              np.minimum(b_size[one] - c, cols))


def _expand(groups, a_start, a_size, b_start, b_size) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    area = a_size * b_size
    which = np.repeat(np.arange(len(groups)), area)
    local = np.arange(int(area.sum()), dtype=np.int64) - np.repeat(np.cumsum(area) - area, area)
    row, column = np.divmod(local, b_size[which])
    return groups[which], a_start[which] + row, b_start[which] + column


def _buckets(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(order sorting `keys`, distinct keys, start of each in that order, count of each)."""
    order = np.argsort(keys, kind="stable")
    distinct, start, count = np.unique(keys[order], return_index=True, return_counts=True)
    return order, distinct, start, count


class _Budget:
    def __init__(self, limit: int):
        self.limit, self.used, self.hit = limit, 0, False


def _hash_pairs(left: np.ndarray, right: np.ndarray | None, threshold: int, budget: _Budget,
                chunk: int = PAIR_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Chunks (i, j, distance) of every pair with Hamming(left[i], right[j]) <= threshold (i < j within `left`
    when `right` is None), each pair once (in the first band it agrees on). Stops, with `budget.hit`, once
    `budget.limit` bucket pairs have been examined."""
    same = right is None
    right = left if same else right
    bands = _bands(threshold)
    for k, (shift, width) in enumerate(bands):
        mask = np.uint64((1 << width) - 1)
        lo, lkeys, lstart, lcount = _buckets((left >> np.uint64(shift)) & mask)
        if same:
            ro, rstart, rcount, li, ri = lo, lstart, lcount, np.arange(len(lkeys)), np.arange(len(lkeys))
        else:
            ro, rkeys, rstart, rcount = _buckets((right >> np.uint64(shift)) & mask)
            _, li, ri = np.intersect1d(lkeys, rkeys, assume_unique=True, return_indices=True)
        for _, a, b in _products(lstart[li], lcount[li], rstart[ri], rcount[ri], chunk):
            if budget.used >= budget.limit:
                budget.hit = True
                return
            budget.used += len(a)
            i, j = lo[a], ro[b]
            if same:
                keep = i < j
                i, j = i[keep], j[keep]
            x = left[i] ^ right[j]
            distance = _popcount(x)
            keep = distance <= threshold
            for earlier_shift, earlier_width in bands[:k]:  # counted in an earlier band already
                keep &= ((x >> np.uint64(earlier_shift)) & np.uint64((1 << earlier_width) - 1)) != 0
            if keep.any():
                yield i[keep], j[keep], distance[keep]


def near_duplicates(left: np.ndarray, right: np.ndarray | None = None, threshold: int = DEFAULT_THRESHOLD
                    ) -> list[Match]:
    """Every (i, j) with Hamming(left[i], right[j]) <= threshold; with `right` None, pairs i < j within `left`.
    A list of Python objects: for small inputs (`overlap_counts` streams instead)."""
    if not 0 <= threshold < 16:
        raise ValueError(f"threshold must be in [0, 15], got {threshold}")
    parts = list(_hash_pairs(left, right, threshold, _Budget(np.iinfo(np.int64).max)))
    if not parts:
        return []
    i, j, d = (np.concatenate(p) for p in zip(*parts))
    order = np.lexsort((j, i))
    return [Match(a, b, c) for a, b, c in zip(i[order].tolist(), j[order].tolist(), d[order].tolist())]


def thumbnails(images: torch.Tensor) -> torch.Tensor:
    """Moment-normalised 16x16 grey thumbnails, zero-mean and unit-norm (N, 256): their dot product is a
    correlation."""
    return _thumbnails_of_normalised(moment_normalise(_grey(images)))


def _thumbnails_of_normalised(grey: torch.Tensor) -> torch.Tensor:
    flat = F.interpolate(grey, size=(THUMBNAIL, THUMBNAIL), mode="bilinear", antialias=True,
                         align_corners=False).flatten(1)
    flat = flat - flat.mean(dim=1, keepdim=True)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-6)


def verified(matches: list[Match], left: torch.Tensor, right: torch.Tensor, min_correlation: float) -> list[Match]:
    """The hash candidates whose thumbnails correlate at least `min_correlation` (thumbnails of the candidates
    only, so a large public split is never held as thumbnails)."""
    if not matches:
        return []
    li = torch.tensor([m.left for m in matches])
    ri = torch.tensor([m.right for m in matches])
    correlation = (thumbnails(left[li]) * thumbnails(right[ri])).sum(dim=1)
    return [m for m, c in zip(matches, correlation.tolist()) if c >= min_correlation]


def _collapse(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(distinct hashes, images in the order of their distinct hash, start of each distinct hash there, counts)."""
    distinct, inverse, count = np.unique(hashes, return_inverse=True, return_counts=True)
    return distinct, np.argsort(inverse.reshape(-1), kind="stable"), np.cumsum(count) - count, count


class _Tally:
    """One comparison's verified near-duplicates: counts, the right images matched, the smallest examples."""

    def __init__(self, n_right: int, left_thumbs: np.ndarray, right_thumbs: np.ndarray, min_correlation: float):
        self.left_thumbs, self.right_thumbs, self.min_correlation = left_thumbs, right_thumbs, min_correlation
        self.matched_right = np.zeros(n_right, dtype=bool)
        self.near_duplicates = self.verified = 0
        self.examples = np.zeros((0, 3), dtype=np.int64)
        width = left_thumbs.shape[1]  # the rows are gathered into these (fresh arrays would be page-faulted anew)
        self.rows = (np.empty((VERIFY_CHUNK, width), np.float32), np.empty((VERIFY_CHUNK, width), np.float32))

    def add(self, i: np.ndarray, j: np.ndarray, distance: np.ndarray) -> None:
        for s in range(0, len(i), VERIFY_CHUNK):
            a, b, d = i[s:s + VERIFY_CHUNK], j[s:s + VERIFY_CHUNK], distance[s:s + VERIFY_CHUNK]
            left, right = self.rows[0][:len(a)], self.rows[1][:len(a)]
            np.take(self.left_thumbs, a, axis=0, out=left, mode="clip")  # "clip": unbuffered (the indices are valid)
            np.take(self.right_thumbs, b, axis=0, out=right, mode="clip")
            correlation = np.einsum("nk,nk->n", left, right)
            ok = correlation >= self.min_correlation
            self.verified += len(a)
            if not ok.any():
                continue
            self.near_duplicates += int(ok.sum())
            self.matched_right[b[ok]] = True
            found = np.concatenate([self.examples, np.stack([a[ok], b[ok], d[ok]], axis=1)])
            self.examples = found[np.lexsort((found[:, 1], found[:, 0]))[:MAX_EXAMPLES]]


def _compare(left_hashes, right_hashes, left_thumbs, right_thumbs, threshold, min_correlation,
             max_hash_pairs: int, max_verified: int) -> dict:
    """One comparison (right_hashes None: pairs inside the left split), in bounded memory: see the module's notes."""
    same = right_hashes is None
    lu, lorder, lstart, lcount = _collapse(left_hashes)
    ru, rorder, rstart, rcount = (lu, lorder, lstart, lcount) if same else _collapse(right_hashes)
    tally = _Tally(len(left_hashes if same else right_hashes), left_thumbs, left_thumbs if same else right_thumbs,
                   min_correlation)
    candidates = 0
    budget = _Budget(max_hash_pairs)

    def verify(groups_left, groups_right, distances) -> None:
        """Verify the image pairs the (distinct hash) pairs stand for, up to `max_verified` in all."""
        for g, a, b in _products(lstart[groups_left], lcount[groups_left], rstart[groups_right],
                                 rcount[groups_right], VERIFY_CHUNK):
            i, j = lorder[a], rorder[b]
            if same:
                keep = groups_left[g] != groups_right[g]  # the pairs inside one hash: each once, i < j
                keep |= i < j
                i, j = np.minimum(i, j)[keep], np.maximum(i, j)[keep]
                g = g[keep]
            room = max_verified - tally.verified
            if room <= 0:
                return
            tally.add(i[:room], j[:room], distances[g[:room]])

    if same:  # images of one hash: distance 0, before anything else
        repeated = np.flatnonzero(lcount > 1)
        candidates += int((lcount[repeated] * (lcount[repeated] - 1) // 2).sum())
        verify(repeated, repeated, np.zeros(len(repeated), dtype=np.int64))
    for u, v, distance in _hash_pairs(lu, None if same else ru, threshold, budget):
        candidates += int((lcount[u] * rcount[v]).sum())
        if tally.verified < max_verified:
            verify(u, v, distance)
    capped = tally.verified < candidates
    return {"near_duplicates": tally.near_duplicates, "images_matched": int(tally.matched_right.sum()),
            "hash_candidates": candidates, "examples": tally.examples.tolist(),
            "verified_candidates": tally.verified, "capped": capped or budget.hit,
            "hash_candidates_capped": budget.hit, "hash_pairs_examined": budget.used}


def overlap_counts(splits: dict[str, torch.Tensor], threshold: int = DEFAULT_THRESHOLD,
                   min_correlation: float = MIN_CORRELATION, max_hash_pairs: int = MAX_HASH_PAIRS,
                   max_verified: int = MAX_VERIFIED) -> dict:
    """Near-duplicate counts between the pair's splits and inside the private train split: the hash finds
    candidates, the thumbnail correlation confirms them. `images_matched` counts images of the right split with
    a near-duplicate in the left one; `examples` holds a few (left index, right index, Hamming distance), the
    smallest by index. Where a comparison's `capped` is true, not every candidate was verified (or, with
    `hash_candidates_capped`, not every bucket pair examined), and its counts are lower bounds."""
    if not 0 <= threshold < 16:
        raise ValueError(f"threshold must be in [0, 15], got {threshold}")
    hashes, thumbs = {}, {}
    for name, images in splits.items():
        hashes[name], thumbs[name] = hashes_and_thumbnails(images)
    result = {"threshold": threshold, "min_correlation": min_correlation,
              "method": "64-bit pHash of moment-normalised images (32x32 grey, 8x8 DCT), banded index, then "
                        "16x16 thumbnail correlation",
              "limits": {"max_hash_pairs": max_hash_pairs, "max_verified": max_verified, "max_examples": MAX_EXAMPLES},
              "comparisons": {}}
    for left, right in (*SPLITS, ("private_train", None)):
        name = f"{left}~{right or left}"
        result["comparisons"][name] = _compare(hashes[left], hashes[right] if right else None, thumbs[left],
                                               thumbs[right or left], threshold, min_correlation, max_hash_pairs,
                                               max_verified)
    result["capped"] = [name for name, c in result["comparisons"].items() if c["capped"]]
    return result


OVERLAP_FORMAT = 3  # bump when the hash, the index, the verification or the result's keys change
# 3: images larger than 32 px are area-reduced to 32 px before the moment normalisation
# 2: streamed and capped; adds limits, capped and per comparison verified_candidates, capped,
#    hash_candidates_capped, hash_pairs_examined


def cached_overlap(pair_name: str, splits: dict[str, torch.Tensor], data_digest: str, cache_dir) -> dict:
    """`overlap_counts` for the pair's splits, cached under the digest of their data: a run reads the counts
    instead of recomputing them, and changed data is a new entry."""
    import json
    from pathlib import Path

    from dpbench.storage import CACHE_FILE_MODE, atomic_write_bytes, cache_build_lock, cache_key

    key = {"format": OVERLAP_FORMAT, "pair": pair_name, "data": data_digest, "threshold": DEFAULT_THRESHOLD,
           "min_correlation": MIN_CORRELATION, "max_hash_pairs": MAX_HASH_PAIRS, "max_verified": MAX_VERIFIED}
    path = Path(cache_dir) / "overlap" / f"{cache_key(key)}.json"

    def cached():
        if path.exists():
            entry = json.loads(path.read_text())
            if entry.get("key") == key:
                return entry["result"]
        return None

    if (result := cached()) is not None:
        _warn_if_capped(result)
        return result
    with cache_build_lock(path):  # a sweep's parallel cells compute it once; the others wait and read it
        if (result := cached()) is not None:
            _warn_if_capped(result)
            return result
        result = overlap_counts(splits)
        atomic_write_bytes(path, json.dumps({"key": key, "result": result}).encode(), CACHE_FILE_MODE)
    _warn_if_capped(result)
    return result


def _warn_if_capped(result: dict) -> None:
    """Log, for every consumer of the counts (`data check`, `data overlap`, a run), that some are lower bounds."""
    capped = [name for name, c in result["comparisons"].items() if c.get("capped")]
    if capped:
        log.warning("near-duplicate counts capped for %s: too many hash candidates to verify them all (at most %s "
                    "per comparison), so the counts are lower bounds; `dpbench data overlap --json` shows how many "
                    "were verified", ", ".join(capped), f"{result.get('limits', {}).get('max_verified', MAX_VERIFIED):,}")


def overlap_summary(result: dict) -> dict[str, int]:
    """The counts a record and `dpbench data check` carry: near-duplicates per comparison (lower bounds where the
    result says `capped`; `cached_overlap` logs a warning then)."""
    return {name: c["near_duplicates"] for name, c in result["comparisons"].items()}
