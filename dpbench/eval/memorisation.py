"""The copy check: does a generator's synthetic set copy its private training images?

Two statistics, both in pixel space (L2 on the uint8 images scaled to [0, 1]):

- The nearest-neighbour ratio test of Gu et al., "On Memorization in Diffusion Models" (TMLR 2025), after Yoon
  et al. (2023): a synthetic image is a near-copy of a reference set when its nearest reference image is much
  closer than its second nearest, d1 / d2 < 1/3. Its fraction against the private train split is set beside its
  fraction against the held-out private test split: a generator that copies nothing is as close to the one as to
  the other. (For points of a Poisson process (d1/d2)^dim is uniform whatever the density, so the two fractions
  are comparable although the splits differ in size.)
- C_T of Meehan, Chaudhuri & Dasgupta, "A non-parametric test to detect data-copying in generative models"
  (AISTATS 2020), their per-cell version: the instance space is cut into cells by k-means on the train split; in
  each cell a Mann-Whitney U test compares the synthetic images' distances to their nearest training image with
  the test images' distances, Z-scored; C_T is the average of the cells' Z weighted by their share of the test
  split, over the cells that hold more than tau * m synthetic images. C_T << 0: the samples sit closer to the
  training images than fresh images do (copying); C_T >> 0: they sit further (underfitting).

The verdict (`flagged`) is documented at `copy_verdict`. Every figure here is computed on the private train split
and is not covered by the run's ε.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from scipy.cluster.vq import kmeans2

RATIO_THRESHOLD = 1 / 3  # d1/d2 below which a sample is a near-copy: Gu et al. (TMLR 2025), after Yoon et al. (2023)
CT_MIN_CELL_SAMPLES = 20  # tau = 20 / m: cells with more than 20 synthetic images count (Meehan et al.'s code)
CT_SAMPLES_PER_CELL = 50  # our choice: about 50 synthetic and test images per cell (k = min(m, n) // 50) ...
CT_MAX_CELLS = 50  # ... and at most 50 cells
CT_FLAG_BELOW = -3.0  # C_T is a weighted mean of cell Z-scores, each ~N(0, 1) without copying: -3 is 3 SDs or more
EXCESS_FLAG_AT = 0.01  # a train-fraction excess over the test fraction of at least 1 point of the samples ...
EXCESS_P_VALUE = 1e-3  # ... that a one-sided exact McNemar test finds at p < 0.001
EXACT_MATCH = 1e-4  # a distance below this is an exact copy: one grey level (1/255) in one pixel is 0.0039
QUERY_CHUNK = 256  # queries per distance block
BLOCK_VALUES = 2**23  # float64 values of one converted reference block (64 MiB), whatever the image size
KMEANS_FIT_IMAGES = 5000  # our choice: the cells are fitted on at most this many train images (seeded subsample)
KMEANS_FIT_VALUES = 2**25  # ... and on at most 256 MiB of float64 values (2,730 images of 3 x 64 x 64)


@dataclass(frozen=True)
class CopyCheck:
    train_fraction: float  # samples that are near-copies (d1/d2 < 1/3) of a private train image
    test_fraction: float  # the same against the private test split: the baseline
    excess_p_value: float  # one-sided exact McNemar test that the train fraction exceeds the test fraction
    ct: float  # Meehan et al.'s C_T (per-cell); nan when no cell holds enough samples
    ct_cells: int  # cells that entered C_T
    cells: int  # k of the k-means partition
    flagged: bool
    reason: str  # why it is flagged, or why not
    n_samples: int
    n_train: int
    n_test: int
    median_distance_to_train: float  # of the samples to their nearest train image
    median_test_distance_to_train: float  # of the test images to their nearest train image


def as_rows(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) images as uint8 rows (N, C*H*W); blocks of them become floats only as they are compared."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"the copy check takes uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
    return images.reshape(len(images), -1)


def _points(rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 rows as float64 points in [0, 1] (float64: torch.cdist's matrix-product form is then exact to ~1e-7,
    where float32's puts an exact copy 0.003 away)."""
    return rows.to(device).double() / 255


def nearest_two(queries: torch.Tensor, reference: torch.Tensor, device: torch.device = torch.device("cpu")
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query row's L2 distance to its nearest and second-nearest reference row (uint8 rows, compared as points
    in [0, 1]). The reference is converted one block of at most BLOCK_VALUES floats at a time, once, and compared
    with QUERY_CHUNK queries at a time, so memory stays bounded whatever the sizes."""
    if len(reference) < 2:
        raise ValueError(f"the copy check needs at least 2 reference images, got {len(reference)}")
    block_rows = max(1, BLOCK_VALUES // reference.shape[1])
    best = torch.full((len(queries), 2), float("inf"), dtype=torch.float64, device=device)
    for ref_start in range(0, len(reference), block_rows):
        block = _points(reference[ref_start:ref_start + block_rows], device)
        for start in range(0, len(queries), QUERY_CHUNK):
            distances = torch.cdist(_points(queries[start:start + QUERY_CHUNK], device), block)
            candidates = torch.cat([best[start:start + QUERY_CHUNK], distances], dim=1)
            best[start:start + QUERY_CHUNK] = candidates.topk(2, dim=1, largest=False).values  # sorted ascending
    return best[:, 0].cpu(), best[:, 1].cpu()


def near_copies(d1: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
    """Boolean per query: d1 / d2 < RATIO_THRESHOLD; an exact copy counts even when the reference holds the image
    twice (d2 = d1 = 0)."""
    return (d1 < RATIO_THRESHOLD * d2) | (d1 < EXACT_MATCH)


def nearest_distance(queries: torch.Tensor, reference: torch.Tensor, device: torch.device = torch.device("cpu")
                     ) -> torch.Tensor:
    if len(reference) == 1:
        return torch.cdist(_points(queries, device), _points(reference, device))[:, 0].cpu()
    return nearest_two(queries, reference, device)[0]


def nearest_centroid(rows: torch.Tensor, centroids: torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.cat([torch.cdist(_points(rows[start:start + QUERY_CHUNK], device), centroids).argmin(1).cpu()
                      for start in range(0, len(rows), QUERY_CHUNK)])


def mann_whitney_z(synthetic: np.ndarray, test: np.ndarray) -> float:
    """Z-score of the Mann-Whitney U of the synthetic distances against the test distances (tie-corrected normal
    approximation, no continuity correction): negative when the synthetic ones are the smaller."""
    result = stats.mannwhitneyu(synthetic, test, alternative="two-sided", method="asymptotic", use_continuity=False)
    u_centre = len(synthetic) * len(test) / 2
    if result.statistic == u_centre:
        return 0.0
    return float(np.sign(result.statistic - u_centre) * stats.norm.isf(result.pvalue / 2))


def number_of_cells(m: int, n: int) -> int:
    return max(1, min(CT_MAX_CELLS, min(m, n) // CT_SAMPLES_PER_CELL))


def data_copying_ct(samples: torch.Tensor, train: torch.Tensor, test: torch.Tensor, *, seed: int,
                    device: torch.device = torch.device("cpu")) -> tuple[float, int, int]:
    """(C_T, cells used, k) of uint8 rows: Meehan et al.'s per-cell statistic, cells from k-means (k-means++ seeded
    with `seed`) on a subsample of the train images (KMEANS_FIT_IMAGES, KMEANS_FIT_VALUES); in each cell, distances
    to the nearest training image of that cell."""
    k = number_of_cells(len(samples), len(test))
    fit, most = train, max(k, min(KMEANS_FIT_IMAGES, KMEANS_FIT_VALUES // train.shape[1]))
    if len(train) > most:
        fit = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:most]]
    centroids, _ = kmeans2(_points(fit, torch.device("cpu")).numpy(), k, iter=20, minit="++", rng=seed,
                           missing="warn")
    centroids = torch.from_numpy(centroids).to(device)
    cell = {name: nearest_centroid(rows, centroids, device) for name, rows in
            (("train", train), ("test", test), ("samples", samples))}
    weights, scores = [], []
    for c in range(k):
        in_train, in_test, in_samples = (train[cell["train"] == c], test[cell["test"] == c],
                                         samples[cell["samples"] == c])
        if len(in_samples) <= CT_MIN_CELL_SAMPLES or len(in_test) == 0 or len(in_train) == 0:
            continue  # Meehan et al. leave out cells the generator barely reaches (tau), and empty cells
        scores.append(mann_whitney_z(nearest_distance(in_samples, in_train, device).numpy(),
                                     nearest_distance(in_test, in_train, device).numpy()))
        weights.append(len(in_test) / len(test))
    if not scores:
        return float("nan"), 0, k
    return float(np.dot(weights, scores) / np.sum(weights)), len(scores), k


def copy_verdict(train_fraction: float, test_fraction: float, p_value: float, ct: float) -> tuple[bool, str]:
    """Flagged when either holds:
    - the train fraction exceeds the test fraction by at least EXCESS_FLAG_AT and a one-sided exact McNemar test
      of the samples that are copies of one split only finds the excess at p < EXCESS_P_VALUE; or
    - C_T < CT_FLAG_BELOW (the samples sit closer to the training images than fresh test images do)."""
    reasons = []
    if train_fraction - test_fraction >= EXCESS_FLAG_AT and p_value < EXCESS_P_VALUE:
        reasons.append(f"{train_fraction:.1%} of the samples are near-copies of a private training image against "
                       f"{test_fraction:.1%} of the held-out test split (p = {p_value:.1e})")
    if ct < CT_FLAG_BELOW:
        reasons.append(f"C_T = {ct:.2f} < {CT_FLAG_BELOW:g}: the samples sit closer to the training images than "
                       "held-out images do")
    if reasons:
        return True, "; ".join(reasons)
    return False, (f"not flagged: near-copies {train_fraction:.1%} of train vs {test_fraction:.1%} of test, "
                   f"C_T = {ct:.2f}")


def copy_check(samples: torch.Tensor, train: torch.Tensor, test: torch.Tensor, *, seed: int = 0,
               device: torch.device = torch.device("cpu")) -> CopyCheck:
    """The copy check of uint8 synthetic images against the private train and test splits' uint8 images."""
    samples, train, test = as_rows(samples), as_rows(train), as_rows(test)
    if samples.shape[1] != train.shape[1] or test.shape[1] != train.shape[1]:
        raise ValueError(f"the samples ({samples.shape[1]} values each), train ({train.shape[1]}) and test "
                         f"({test.shape[1]}) images differ in size")
    to_train = nearest_two(samples, train, device)
    copies_train, copies_test = near_copies(*to_train), near_copies(*nearest_two(samples, test, device))
    only_train = int((copies_train & ~copies_test).sum())
    only_test = int((copies_test & ~copies_train).sum())
    p_value = (stats.binomtest(only_train, only_train + only_test, 0.5, alternative="greater").pvalue
               if only_train + only_test else 1.0)
    ct, ct_cells, cells = data_copying_ct(samples, train, test, seed=seed, device=device)
    train_fraction, test_fraction = copies_train.float().mean().item(), copies_test.float().mean().item()
    flagged, reason = copy_verdict(train_fraction, test_fraction, p_value, ct)
    return CopyCheck(train_fraction=train_fraction, test_fraction=test_fraction, excess_p_value=float(p_value),
                     ct=ct, ct_cells=ct_cells, cells=cells, flagged=flagged, reason=reason, n_samples=len(samples),
                     n_train=len(train), n_test=len(test), median_distance_to_train=to_train[0].median().item(),
                     median_test_distance_to_train=nearest_distance(test, train, device).median().item())
