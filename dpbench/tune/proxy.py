"""The proxy task hyperparameters are tuned on: a split of the *public* data standing in for the private one.

The public split is cut, stratified by class with a fixed seed, into three parts:
- backbone part: pre-trains the backbone used while tuning, so proxy fine-tuning starts from a model that has
  not seen the proxy images;
- proxy-private: what DP fine-tuning trains on;
- proxy-test: what the trained artifact is scored against.
Both proxy parts get the same fixed domain shift (`shift_domain`), so fine-tuning has a shift to adapt to, as it
does on the real pair. No private image, label or statistic enters; `proxy_pair_data` is given the public split
only, and the size of the real private split (a public fact of the pair) to scale the sample rate.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from dpbench.data.types import ImageSet, PairData


@dataclass(frozen=True)
class ProxySplit:
    backbone_fraction: float = 0.5
    private_fraction: float = 0.3  # the rest (0.2) is the proxy test split
    seed: int = 20261125
    # The shift applied to both proxy parts: a horizontal shear (slanted writing), a 3x3 grey dilation (thicker
    # strokes) and a contrast curve around `sharpen_level` (crisper edges). Stroke width and contrast alone stay
    # inside the pre-training augmentation's range (a classifier trained on the backbone part kept 83% of its
    # accuracy on them); with the shear it drops to 45%, so fine-tuning has something to adapt to. Measured on
    # public data only.
    shear: float = 0.4
    thicken: bool = True
    sharpen_level: float = 0.4
    sharpen_gain: float = 10.0

    def to_dict(self) -> dict:
        return asdict(self)


def shift_domain(images: torch.Tensor, split: ProxySplit) -> torch.Tensor:
    """The proxy's fixed domain shift on uint8 images (N, C, H, W); deterministic, same for every method."""
    unit = images.float() / 255
    if split.shear:
        theta = torch.tensor([[1.0, split.shear, 0.0], [0.0, 1.0, 0.0]]).expand(len(images), 2, 3)
        grid = F.affine_grid(theta, list(unit.shape), align_corners=False)
        unit = F.grid_sample(unit, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if split.thicken:
        unit = F.max_pool2d(unit, 3, stride=1, padding=1)
    curve = lambda v: torch.sigmoid(split.sharpen_gain * (v - split.sharpen_level))  # noqa: E731
    low, high = curve(torch.tensor(0.0)), curve(torch.tensor(1.0))
    unit = (curve(unit) - low) / (high - low)
    return (unit * 255).round().clamp(0, 255).to(torch.uint8)


def stratified_parts(labels: torch.Tensor, fractions: tuple[float, ...], seed: int) -> list[torch.Tensor]:
    """Indices of len(fractions) + 1 disjoint parts, each class cut in the same proportions."""
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for cls in torch.unique(labels).tolist():
        index = (labels == cls).nonzero().flatten()
        index = index[torch.randperm(len(index), generator=generator)]
        start = 0
        for i, fraction in enumerate(fractions):
            end = start + round(fraction * len(index))
            parts[i].append(index[start:end])
            start = end
        parts[-1].append(index[start:])
    return [torch.sort(torch.cat(p)).values for p in parts]


def proxy_pair_data(public: ImageSet, split: ProxySplit, info: dict | None = None) -> PairData:
    """A PairData made of public images only: backbone part as the public split, shifted proxy parts as the
    private train and test splits."""
    backbone, private, test = stratified_parts(public.labels, (split.backbone_fraction, split.private_fraction),
                                               split.seed)
    if min(len(backbone), len(private), len(test)) == 0:
        raise ValueError(f"the public split ({len(public)} images) is too small for a proxy split")

    def shifted(index: torch.Tensor) -> ImageSet:
        return ImageSet(shift_domain(public.images[index], split), public.labels[index])

    proxy_info = {k: v for k, v in (info or {}).items() if k.startswith("public")}
    proxy_info["proxy"] = {"split": split.to_dict(), "sizes": [len(backbone), len(private), len(test)]}
    return PairData(public.subset(backbone), shifted(private), shifted(test), proxy_info)


def scaled_batch_size(batch_size: int, n_proxy: int, n_private: int) -> int:
    """The expected batch that gives the proxy the same sample rate q = batch / n as the real private split."""
    return max(1, round(batch_size * n_proxy / n_private))
