"""FID and KID between two uint8 image sets, through torch-fidelity, offline."""
from __future__ import annotations

import contextlib
import re
from pathlib import Path

import torch
from torch.utils.data import Dataset

from dpbench.eval.inception import resolve_inception_weights
from dpbench.storage import cache_build_lock, private_dir, tensor_digest

_KEY_RE = re.compile(r"^[A-Za-z0-9._-]+$")
EXTRACTOR_NAME = "inception-v3-compat-channels-last"


def _register_channels_last_inception() -> None:
    """torch-fidelity's own Inception, run in channels-last memory format: about 2x faster on a CPU,
    features equal to ~5e-6 (same weights, same ops, another memory layout)."""
    import torch_fidelity
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    class ChannelsLastInceptionV3(FeatureExtractorInceptionV3):
        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list, **kwargs)
            self.to(memory_format=torch.channels_last)

        def forward(self, x):
            return super().forward(x.contiguous(memory_format=torch.channels_last))

    if EXTRACTOR_NAME not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(EXTRACTOR_NAME, ChannelsLastInceptionV3)


class _Uint8Images(Dataset):
    """Yields uint8 (3, H, W); grayscale is repeated to three channels. torch-fidelity resizes to 299."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = self.images[i]
        return x.expand(3, -1, -1) if x.shape[0] == 1 else x


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


def _reference_build_lock(kwargs: dict):
    """Parallel runs (a sweep's cells) extract the reference's cached features once: until torch-fidelity has
    written them, the first run holds a lock and the others wait for it, then load what it wrote."""
    if not kwargs.get("cache"):
        return contextlib.nullcontext()
    cache_root, name = Path(kwargs["cache_root"]), kwargs["input2_cache_name"]
    if any(cache_root.glob(f"{name}-*-features-*.pt")):
        return contextlib.nullcontext()
    return cache_build_lock(cache_root / name)


def fid_kid(
    generated: torch.Tensor,
    reference: torch.Tensor,
    *,
    cache_dir: Path,
    reference_cache_key: str | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> dict:
    """FID and KID (Inception pool3 features) of `generated` against `reference`, both uint8 (N, C, H, W).

    With `reference_cache_key`, the reference features and FID statistics are cached under `cache_dir` by
    torch-fidelity and reused. The cache entry is named by the key plus a digest of the reference pixels,
    so a changed reference set under the same key is re-extracted rather than silently reused.
    KID is the mean over torch-fidelity's 100 random subsets of kid_subset_size(n) samples from each set, kid_std
    their spread. KID is unbiased, so near-identical sets can score slightly below zero.
    """
    import torch_fidelity

    generated, reference = _check(generated, "generated"), _check(reference, "reference")
    cache_dir = Path(cache_dir)
    device = torch.device(device)
    cuda = device.type == "cuda"

    kwargs: dict = {"cache": False}
    if reference_cache_key is not None:
        if not _KEY_RE.match(reference_cache_key):
            raise ValueError(f"reference_cache_key must match {_KEY_RE.pattern}: {reference_cache_key!r}")
        kwargs = {
            "cache": True,
            # torch-fidelity pickles its feature cache (torch.save); a folder only the owner can write keeps
            # another user from planting a file that would be unpickled here
            "cache_root": str(private_dir(cache_dir / "fidelity_cache")),
            "input2_cache_name": f"{reference_cache_key}-{_content_digest(reference)}",
        }

    _register_channels_last_inception()
    n1, n2 = len(generated), len(reference)
    subset_size = kid_subset_size(n1, n2)
    # torch-fidelity calls .cuda() without an index, so select the requested GPU as current.
    with torch.cuda.device(device) if cuda else contextlib.nullcontext(), _reference_build_lock(kwargs):
        metrics = torch_fidelity.calculate_metrics(
            input1=_Uint8Images(generated),
            input2=_Uint8Images(reference),
            fid=True,
            kid=True,
            feature_extractor=EXTRACTOR_NAME,
            kid_subset_size=subset_size,
            kid_subsets=KID_SUBSETS,
            feature_extractor_weights_path=str(resolve_inception_weights(cache_dir)),
            cuda=cuda,
            batch_size=batch_size,
            save_cpu_ram=True,  # no DataLoader worker processes: the images are already in memory
            verbose=False,
            **kwargs,
        )
    return {
        "fid": float(metrics[torch_fidelity.KEY_METRIC_FID]),
        "kid": float(metrics[torch_fidelity.KEY_METRIC_KID_MEAN]),
        "kid_std": float(metrics[torch_fidelity.KEY_METRIC_KID_STD]),
        "kid_subset_size": subset_size,
        "kid_subsets": KID_SUBSETS,
        "n_generated": n1,
        "n_reference": n2,
    }
