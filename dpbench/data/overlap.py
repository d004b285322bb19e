"""Near-duplicates between a pair's splits, by perceptual hash.

Duplicates between public and private data (ImageNet and CIFAR-10 share images), or between private train
and private test, void what a run claims: a "private" image was seen in pre-training, or a test image was
trained on. Inception features would be too slow for the large public sets on a CPU (1.28M ImageNet32 images
at 20-25 images/s is over 14 hours), so the check uses a DCT perceptual hash (pHash: grey, 32x32, the 8x8
lowest DCT frequencies against their median, 64 bits), computed after centring and scaling each image by the
moments of its content so that small shifts and rescales keep the hash, and a banded index: with a Hamming threshold of
`threshold`, the hash is cut into `threshold + 1` bands, and two hashes within the threshold agree exactly on
at least one band (pigeonhole), so only images that share a band bucket are compared.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

HASH_SIZE = 32  # the image is reduced to 32x32 grey before the DCT
LOW_FREQUENCIES = 8  # 8x8 lowest frequencies -> 64 bits
DEFAULT_THRESHOLD = 4  # Hamming distance <= 4 of 64 bits makes a candidate (recall: README)
MIN_CORRELATION = 0.98  # a candidate is a near-duplicate when its 16x16 normalised thumbnails correlate this well
THUMBNAIL = 16
SPLITS = (("public", "private_train"), ("public", "private_test"), ("private_train", "private_test"))


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
    mass = (grey - grey.flatten(1).median(dim=1).values.view(n, 1, 1, 1)).abs()[:, 0]
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
    background = grey.flatten(1).median(dim=1).values.view(n, 1, 1, 1)
    return F.grid_sample(grey - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def perceptual_hashes(images: torch.Tensor, chunk: int = 8192) -> np.ndarray:
    """64-bit pHashes (uint64) of uint8 images (N, C, H, W), any size and channel count."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    dct = _dct_matrix(HASH_SIZE)
    weights = 1 << np.arange(63, -1, -1, dtype=np.uint64)
    out = np.empty(len(images), dtype=np.uint64)
    for start in range(0, len(images), chunk):
        grey = moment_normalise(images[start:start + chunk].float().mean(dim=1, keepdim=True))
        small = F.interpolate(grey, size=(HASH_SIZE, HASH_SIZE), mode="bilinear", antialias=True,
                              align_corners=False)[:, 0]
        low = (dct @ small @ dct.T)[:, :LOW_FREQUENCIES, :LOW_FREQUENCIES].reshape(len(small), -1)
        median = low[:, 1:].median(dim=1, keepdim=True).values  # the DC term would dominate the median
        bits = (low > median).numpy().astype(np.uint64)
        out[start:start + len(bits)] = (bits * weights).sum(axis=1, dtype=np.uint64)
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distances between uint64 hashes (broadcasting)."""
    x = np.asarray(np.bitwise_xor(a, b), dtype=np.uint64)
    flat = np.ascontiguousarray(x.reshape(-1))
    counts = np.unpackbits(flat.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
    return counts.reshape(x.shape)


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


def near_duplicates(left: np.ndarray, right: np.ndarray | None = None, threshold: int = DEFAULT_THRESHOLD
                    ) -> list[Match]:
    """Every (i, j) with Hamming(left[i], right[j]) <= threshold; with `right` None, pairs i < j within `left`."""
    if not 0 <= threshold < 16:
        raise ValueError(f"threshold must be in [0, 15], got {threshold}")
    same = right is None
    right = left if same else right
    found: dict[tuple[int, int], int] = {}
    for shift, width in _bands(threshold):
        mask = np.uint64((1 << width) - 1)
        buckets: dict[int, list[int]] = defaultdict(list)
        for j, key in enumerate(((right >> np.uint64(shift)) & mask).tolist()):
            buckets[key].append(j)
        for i, key in enumerate(((left >> np.uint64(shift)) & mask).tolist()):
            candidates = buckets.get(key)
            if not candidates:
                continue
            js = np.asarray([j for j in candidates if not same or j > i], dtype=np.int64)
            if len(js) == 0:
                continue
            distances = hamming(left[i], right[js])
            for j, d in zip(js[distances <= threshold].tolist(), distances[distances <= threshold].tolist()):
                found[(i, j)] = int(d)
    return [Match(i, j, d) for (i, j), d in sorted(found.items())]


def thumbnails(images: torch.Tensor) -> torch.Tensor:
    """Moment-normalised 16x16 grey thumbnails, zero-mean and unit-norm (N, 256): their dot product is a
    correlation."""
    grey = moment_normalise(images.float().mean(dim=1, keepdim=True))
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


def overlap_counts(splits: dict[str, torch.Tensor], threshold: int = DEFAULT_THRESHOLD,
                   min_correlation: float = MIN_CORRELATION) -> dict:
    """Near-duplicate counts between the pair's splits and inside the private train split: the hash finds
    candidates, the thumbnail correlation confirms them. `images_matched` counts images of the right split with
    a near-duplicate in the left one; `examples` holds a few (left index, right index, Hamming distance)."""
    hashes = {name: perceptual_hashes(images) for name, images in splits.items()}
    result = {"threshold": threshold, "min_correlation": min_correlation,
              "method": "64-bit pHash of moment-normalised images (32x32 grey, 8x8 DCT), banded index, then "
                        "16x16 thumbnail correlation", "comparisons": {}}
    for left, right in (*SPLITS, ("private_train", None)):
        candidates = near_duplicates(hashes[left], hashes[right] if right else None, threshold)
        matches = verified(candidates, splits[left], splits[right or left], min_correlation)
        result["comparisons"][f"{left}~{right or left}"] = {
            "near_duplicates": len(matches), "images_matched": len({m.right for m in matches}),
            "hash_candidates": len(candidates), "examples": [[m.left, m.right, m.distance] for m in matches[:5]]}
    return result


OVERLAP_FORMAT = 1  # bump when the hash, the index or the verification changes


def cached_overlap(pair_name: str, splits: dict[str, torch.Tensor], data_digest: str, cache_dir) -> dict:
    """`overlap_counts` for the pair's splits, cached under the digest of their data: a run reads the counts
    instead of recomputing them, and changed data is a new entry."""
    import json
    from pathlib import Path

    from dpbench.storage import CACHE_FILE_MODE, atomic_write_bytes, cache_build_lock, cache_key

    key = {"format": OVERLAP_FORMAT, "pair": pair_name, "data": data_digest, "threshold": DEFAULT_THRESHOLD,
           "min_correlation": MIN_CORRELATION}
    path = Path(cache_dir) / "overlap" / f"{cache_key(key)}.json"

    def cached():
        if path.exists():
            entry = json.loads(path.read_text())
            if entry.get("key") == key:
                return entry["result"]
        return None

    if (result := cached()) is not None:
        return result
    with cache_build_lock(path):  # a sweep's parallel cells compute it once; the others wait and read it
        if (result := cached()) is not None:
            return result
        result = overlap_counts(splits)
        atomic_write_bytes(path, json.dumps({"key": key, "result": result}).encode(), CACHE_FILE_MODE)
    return result


def overlap_summary(result: dict) -> dict[str, int]:
    """The counts a record and `dpbench data check` carry: near-duplicates per comparison."""
    return {name: c["near_duplicates"] for name, c in result["comparisons"].items()}
