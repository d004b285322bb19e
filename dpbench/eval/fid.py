"""FID and KID between two uint8 image sets, offline: Inception features by eval.inception_features, the metrics by
torch-fidelity's own functions (the same FID and KID as its calculate_metrics)."""
from __future__ import annotations

import functools
import io
import re
from pathlib import Path

import numpy as np
import torch

from dpbench.eval.inception import resolve_inception_weights
from dpbench.eval.inception_features import FEATURES_VERSION, InceptionFeatures
from dpbench.storage import CACHE_FILE_MODE, atomic_write_bytes, cache_build_lock, cache_key, private_dir, tensor_digest

_KEY_RE = re.compile(r"^[A-Za-z0-9._-]+$")
FEATURES_DIR = "inception_features"


def _check(images: torch.Tensor, name: str) -> torch.Tensor:
    if not (torch.is_tensor(images) and images.dtype == torch.uint8 and images.dim() == 4):
        raise ValueError(f"{name}: expected a uint8 tensor (N, C, H, W)")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"{name}: expected 1 or 3 channels, got {images.shape[1]}")
    if len(images) < 2:
        raise ValueError(f"{name}: FID/KID need at least 2 images, got {len(images)}")
    return images.detach().cpu().contiguous()


def _content_digest(images: torch.Tensor) -> str:
    return tensor_digest(images, length=12)


KID_SUBSETS = 100  # torch-fidelity's default kid_subsets


def kid_subset_size(n_generated: int, n_reference: int) -> int:
    """torch-fidelity's default subset size is 1000. A subset as large as the smaller set is that whole set every
    time, so the 100 subsets all give the same value and kid_std measures nothing (it was ~1e-7 at 1,000 of 1,000);
    half the smaller set, at most 1000, keeps the subsets random while still comparing hundreds of samples."""
    return max(2, min(1000, min(n_generated, n_reference) // 2))


@functools.lru_cache(maxsize=2)
def _extractor(weights: Path, device: str) -> InceptionFeatures:
    """One frozen network per weights file and device in a process (a sweep scores many runs in one process)."""
    return InceptionFeatures(weights, device)


def _task(progress, description: str, total: int):
    return progress.task(description, total=total) if progress is not None else None


def _features(extractor: InceptionFeatures, images: torch.Tensor, progress, description: str) -> torch.Tensor:
    task = _task(progress, description, len(images))
    features = extractor(images, task)
    if task is not None:
        task.close()
    return features


def reference_features_path(cache_dir: Path, reference_cache_key: str, reference: torch.Tensor,
                            weights: Path) -> Path:
    """Where the reference's features are cached: named by the caller's key, a digest of the reference pixels (a
    changed set under the same key is re-extracted) and a digest of how features are computed."""
    how = cache_key({"features": FEATURES_VERSION, "weights": Path(weights).name})
    return Path(cache_dir) / FEATURES_DIR / f"{reference_cache_key}-{_content_digest(reference)}-{how[:12]}.npy"


def _cached_reference_features(extractor: InceptionFeatures, reference: torch.Tensor, path: Path,
                               progress) -> torch.Tensor:
    """The reference's features from the cache, else extracted once and cached. Parallel runs (a sweep's cells)
    extract them once: the first holds a lock, the others wait for it and then load what it wrote. The file is a
    plain .npy, loaded without pickle."""
    private_dir(path.parent)  # a folder only the owner can write
    if not path.is_file():
        with cache_build_lock(path):
            if not path.is_file():
                features = _features(extractor, reference, progress, "FID/KID: Inception on the reference images")
                buffer = io.BytesIO()
                np.save(buffer, features.numpy(), allow_pickle=False)
                atomic_write_bytes(path, buffer.getvalue(), CACHE_FILE_MODE)
                return features
    features = torch.from_numpy(np.load(path, allow_pickle=False))
    if features.shape != (len(reference), 2048):
        raise ValueError(f"cached reference features {path} have shape {tuple(features.shape)}, expected "
                         f"({len(reference)}, 2048); delete the file to re-extract")
    return features


def fid_kid(
    generated: torch.Tensor,
    reference: torch.Tensor,
    *,
    cache_dir: Path,
    reference_cache_key: str | None = None,
    device: torch.device | str = "cpu",
    progress=None,
) -> dict:
    """FID and KID (Inception pool3 features) of `generated` against `reference`, both uint8 (N, C, H, W).

    With `reference_cache_key`, the reference features are cached under `cache_dir` and reused
    (reference_features_path). `progress` gets one task per Inception pass, advanced image by image.
    KID is the mean over torch-fidelity's 100 random subsets of kid_subset_size(n) samples from each set, kid_std
    their spread. KID is unbiased, so near-identical sets can score slightly below zero.
    """
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    generated, reference = _check(generated, "generated"), _check(reference, "reference")
    if reference_cache_key is not None and not _KEY_RE.match(reference_cache_key):
        raise ValueError(f"reference_cache_key must match {_KEY_RE.pattern}: {reference_cache_key!r}")
    weights = resolve_inception_weights(Path(cache_dir), progress)
    extractor = _extractor(weights, str(torch.device(device)))
    if reference_cache_key is None:
        reference_features = _features(extractor, reference, progress, "FID/KID: Inception on the reference images")
    else:
        path = reference_features_path(cache_dir, reference_cache_key, reference, weights)
        reference_features = _cached_reference_features(extractor, reference, path, progress)
    generated_features = _features(extractor, generated, progress, "FID/KID: Inception on the samples")

    n1, n2 = len(generated), len(reference)
    subset_size = kid_subset_size(n1, n2)
    fid = fid_statistics_to_metric(fid_features_to_statistics(generated_features),
                                   fid_features_to_statistics(reference_features), verbose=False)[KEY_METRIC_FID]
    kid = kid_features_to_metric(generated_features, reference_features, kid_subset_size=subset_size,
                                 kid_subsets=KID_SUBSETS, verbose=False)
    return {
        "fid": float(fid),
        "kid": float(kid[KEY_METRIC_KID_MEAN]),
        "kid_std": float(kid[KEY_METRIC_KID_STD]),
        "kid_subset_size": subset_size,
        "kid_subsets": KID_SUBSETS,
        "n_generated": n1,
        "n_reference": n2,
    }
