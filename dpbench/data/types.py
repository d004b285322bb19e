"""What a dataset pair is and what loading one gives."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # torch is imported where data is made, not where a pair is declared (fast `dpbench list`)
    import torch


@dataclass(frozen=True)
class ImageSet:
    """uint8 images (N, C, H, W) with int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        import torch

        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be int64 (N,), got {self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: torch.Tensor) -> "ImageSet":
        return ImageSet(self.images[index], self.labels[index])


@dataclass(frozen=True)
class PairData:
    """The three splits of a pair. Private data must only ever reach DP fine-tuning and evaluation."""

    public_train: ImageSet
    private_train: ImageSet
    private_test: ImageSet
    info: dict = field(default_factory=dict)  # provenance: sources, split seed, warnings


@dataclass(frozen=True)
class PairSpec:
    """A public -> private dataset pair, as registered by a plugin.

    `load(data_root)` returns a PairData; `data_root` is None for pairs that need no user files.
    """

    name: str
    description: str
    image_size: int
    channels: int
    num_classes: int
    load: Callable[[str | None], PairData]
    classifier: str = "cnn"  # downstream classifier family: "cnn" (MNIST-like) or "resnet9" (CIFAR-like)
    # Reports which of the pair's files are present, missing or corrupt under data_root (None: needs no files).
    check_files: Callable[[str | None], list["FileStatus"]] | None = None
    # Fetches what torchvision can fetch into data_root when a network exists (None: nothing to fetch).
    download: Callable[[str], None] | None = None


@dataclass(frozen=True)
class FileStatus:
    """One expected file of a pair: where it should be, and whether it is usable."""

    path: str
    status: str  # "present", "missing" or "corrupt"
    detail: str = ""


class DataMissingError(Exception):
    """A pair's files are missing or unusable; the message names each expected path."""


class BadPairDataError(ValueError):
    """A pair's loader returned data that does not match what the pair declares."""


def check_pair_data(spec: "PairSpec", data: object) -> "PairData":
    """Refuse, naming the pair and the split, data a pair's loader returned that is not what it declares:
    not a PairData, images that are not uint8 (N, channels, image_size, image_size), private labels outside
    [0, num_classes) (negative public labels), or an empty split."""
    if not isinstance(data, PairData):
        raise BadPairDataError(f"pair '{spec.name}': load() returned {type(data).__name__}, not a PairData")
    shape = (spec.channels, spec.image_size, spec.image_size)
    for split in ("public_train", "private_train", "private_test"):
        images = getattr(data, split)
        if not isinstance(images, ImageSet):
            raise BadPairDataError(f"pair '{spec.name}': {split} is {type(images).__name__}, not an ImageSet")
        if tuple(images.images.shape[1:]) != shape:
            raise BadPairDataError(f"pair '{spec.name}': {split} images are {tuple(images.images.shape[1:])}, the "
                                   f"pair declares {shape}")
        if len(images) == 0:
            raise BadPairDataError(f"pair '{spec.name}': {split} is empty")
        low, high = int(images.labels.min()), int(images.labels.max())
        # a public split may carry its own classes (ImageNet labels for CelebA); the private ones are the pair's
        if low < 0 or (split != "public_train" and high >= spec.num_classes):
            raise BadPairDataError(f"pair '{spec.name}': {split} labels span [{low}, {high}], the pair declares "
                                   f"{spec.num_classes} classes")
    return data
