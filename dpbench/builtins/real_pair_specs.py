"""The real-data pairs: svhn-mnist, imagenet32-cifar10, imagenet32-cifar10-1pct, imagenet-celeba(-64).

Their files are the user's, under one data root: `--data-root DIR`, else $DPBENCH_DATA_ROOT, else
~/.cache/dpbench/data. The layout is what the official archives unpack to, and where torchvision's
downloaders put them:

    <data-root>/
      MNIST/raw/                       train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
                                       t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz
                                       (each may also be uncompressed, without .gz)
      svhn/train_32x32.mat             SVHN cropped digits, train split
      cifar-10-batches-py/             data_batch_1 .. data_batch_5, test_batch, batches.meta
                                       (cifar-10-python.tar.gz unpacked)
      Imagenet32_train_npz/            train_data_batch_1.npz .. train_data_batch_10.npz
      Imagenet32_val_npz/val_data.npz  (Imagenet32_train_npz.zip and Imagenet32_val_npz.zip unzipped)
      celeba/img_align_celeba/         000001.jpg .. 202599.jpg (img_align_celeba.zip unzipped)
      celeba/list_attr_celeba.txt
      celeba/list_eval_partition.txt
      imagenet_folder/<wnid>/*.jpg     only for an imagenet-celeba pair built with public="folder"

`--download` fetches MNIST, SVHN, CIFAR-10 and CelebA through torchvision where a network exists (and
only what is missing, so a user's own copy is never overwritten). ImageNet32 cannot be fetched: it
needs an image-net.org account.

Image formats:
- svhn-mnist: 32x32, 1 channel. MNIST is zero-padded 28 -> 32 (2 px a side), which keeps its pixels and
  digit scale exactly (resizing would blur and enlarge the digits); SVHN is converted to grayscale with
  the ITU-R 601-2 luma weights PIL uses for "L". One channel because the private data, the generated
  samples and their evaluation are grayscale; SVHN's colour carries no digit information.
- imagenet32-cifar10(-1pct): 32x32 RGB, both sets' native format.
- imagenet-celeba: 32x32 RGB (imagenet-celeba-64: 64x64). CelebA center-cropped 140x140, bicubic resize.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np

from dpbench.builtins.imagenet_classes import DEVKIT_TO_CIFAR10, TABLE_I
from dpbench.data.file_report import format_report, resolve_data_root
from dpbench.data.types import DataMissingError, FileStatus, ImageSet, PairData, PairSpec

MNIST_DIR, SVHN_DIR, CIFAR_DIR, CELEBA_DIR, FOLDER_DIR = "MNIST/raw", "svhn", "cifar-10-batches-py", "celeba", "imagenet_folder"
ONE_PERCENT_SEED = 0  # the recorded seed of the imagenet32-cifar10-1pct private subset
ONE_PERCENT_PER_CLASS = 50  # 1% of CIFAR-10's 50,000 train images = 500, i.e. 50 per class
PUBLIC_SAMPLE = 50_000  # in-memory public sample of the celeba pairs (ImageNet32 val has exactly this many)

HOW_TO_GET = {
    "MNIST": "run with --download (torchvision), or put the four idx .gz files of MNIST in {root}/MNIST/raw/",
    "SVHN": "run with --download (torchvision), or put train_32x32.mat from ufldl.stanford.edu/housenumbers in {root}/svhn/",
    "CIFAR-10": "run with --download (torchvision), or unpack cifar-10-python.tar.gz in {root}/",
    "CelebA": "run with --download (torchvision, Google Drive), or unzip img_align_celeba.zip and put the two list_*.txt files in {root}/celeba/",
    "ImageNet32": "cannot be downloaded automatically (image-net.org needs an account): get Imagenet32_train_npz.zip "
    "and Imagenet32_val_npz.zip from https://image-net.org/download-images and unzip both in {root}/",
    "ImageNet folder": "put a folder of class sub-folders of (downsampled) ImageNet images at {root}/imagenet_folder/",
}


# --- sources: (name, check(root, deep)) -------------------------------------------------------------

def _mnist(root: Path, deep: bool) -> list[FileStatus]:
    from dpbench.data.readers import mnist_idx

    return mnist_idx.check_mnist(root / MNIST_DIR, deep=deep)


def _svhn(root: Path, deep: bool) -> list[FileStatus]:
    from dpbench.data.readers import svhn_mat

    return svhn_mat.check_svhn(root / SVHN_DIR, deep=deep)


def _cifar(root: Path, deep: bool) -> list[FileStatus]:
    from dpbench.data.readers import cifar_pickle

    return cifar_pickle.check_cifar10(root / CIFAR_DIR, deep=deep)


def _celeba(root: Path, deep: bool) -> list[FileStatus]:
    from dpbench.data.readers import celeba

    return celeba.check_celeba(root / CELEBA_DIR, deep=deep)


def _imagenet32(*splits: str) -> Callable[[Path, bool], list[FileStatus]]:
    def check(root: Path, deep: bool) -> list[FileStatus]:
        from dpbench.data.readers import imagenet32_npz

        return imagenet32_npz.check_imagenet32(root, splits, deep=deep)

    return check


def _folder(root: Path, deep: bool) -> list[FileStatus]:
    from dpbench.data.readers import image_folder

    return image_folder.check_folder(root / FOLDER_DIR, deep=deep)


Sources = dict[str, Callable[[Path, bool], list[FileStatus]]]


def _check(sources: Sources, data_root: str | None) -> list[FileStatus]:
    root = resolve_data_root(data_root)
    return [s for check in sources.values() for s in check(root, True)]


def _require(pair: str, sources: Sources, root: Path) -> None:
    """Raise DataMissingError naming every missing path (existence only; loading validates the rest)."""
    statuses, hints = [], []
    for name, check in sources.items():
        found = check(root, False)
        statuses += found
        if any(s.status != "present" for s in found):
            hints.append(f"{name}: " + HOW_TO_GET[name].format(root=root))
    if hints:
        raise DataMissingError(format_report(pair, root, [s for s in statuses if s.status != "present"], hints))


def _download(pair: str, sources: Sources, data_root: str) -> None:
    """Fetch through torchvision only the sources that are missing, never overwriting a user's copy."""
    import torchvision.datasets as tvd

    root = resolve_data_root(data_root)
    fetch = {
        "MNIST": lambda: [tvd.MNIST(str(root), train=t, download=True) for t in (True, False)],
        "SVHN": lambda: tvd.SVHN(str(root / SVHN_DIR), split="train", download=True),
        "CIFAR-10": lambda: tvd.CIFAR10(str(root), train=True, download=True),
        "CelebA": lambda: tvd.CelebA(str(root), split="all", target_type="attr", download=True),
    }
    for name, check in sources.items():
        if name in fetch and any(s.status == "missing" for s in check(root, False)):
            fetch[name]()
    _require(pair, sources, root)  # what torchvision cannot fetch (ImageNet32) is reported here


def _spec(name: str, sources: Sources, load: Callable[[Path], PairData], **fields) -> PairSpec:
    def checked_load(data_root: str | None) -> PairData:
        root = resolve_data_root(data_root)
        _require(name, sources, root)
        return load(root)

    return PairSpec(
        name=name,
        load=checked_load,
        check_files=functools.partial(_check, sources),
        download=functools.partial(_download, name, sources),
        **fields,
    )


# --- image conversions ------------------------------------------------------------------------------

def to_gray(images: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """uint8 RGB (N, 3, H, W) -> uint8 (N, 1, H, W), ITU-R 601-2 luma (PIL's "L"), rounded. In chunks, so the
    int32 arithmetic never holds more than `chunk` images (all of SVHN train at once was 1.5 GB of temporaries)."""
    import torch

    out = torch.empty((images.shape[0], 1, *images.shape[2:]), dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        r, g, b = images[start:start + chunk].to(torch.int32).unbind(1)
        out[start:start + chunk, 0] = (299 * r + 587 * g + 114 * b + 500) // 1000
    return out


def pad_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad (N, C, h, w) to (N, C, size, size), centred."""
    import torch
    import torch.nn.functional as F

    dh, dw = size - images.shape[2], size - images.shape[3]
    return F.pad(images, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))


def resize(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """uint8 (N, C, h, w) -> uint8 (N, C, size, size), bicubic with antialiasing, in chunks."""
    import torch
    import torch.nn.functional as F

    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, len(images), chunk):
        x = F.interpolate(images[i:i + chunk].float(), size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        out[i:i + chunk] = x.round().clamp(0, 255).to(torch.uint8)
    return out


# --- svhn-mnist -------------------------------------------------------------------------------------

def _load_svhn_mnist(root: Path) -> PairData:
    from dpbench.data.readers import mnist_idx
    from dpbench.data.readers import svhn_mat

    public, w1 = svhn_mat.load_svhn(root / SVHN_DIR, "train")
    train, w2 = mnist_idx.load_mnist(root / MNIST_DIR, "train")
    test, w3 = mnist_idx.load_mnist(root / MNIST_DIR, "test")
    return PairData(
        public_train=ImageSet(to_gray(public.images), public.labels),
        private_train=ImageSet(pad_to(train.images, 32), train.labels),
        private_test=ImageSet(pad_to(test.images, 32), test.labels),
        info={
            "sources": {"public": "SVHN train_32x32.mat", "private": "MNIST idx (train 60k / t10k 10k)"},
            "image_format": "32x32x1: SVHN to grayscale (ITU-R 601-2 luma), MNIST zero-padded 28->32",
            "label_names": [str(d) for d in range(10)],
            "warnings": w1 + w2 + w3,
        },
    )


SVHN_MNIST = _spec(
    "svhn-mnist",
    {"SVHN": _svhn, "MNIST": _mnist},
    _load_svhn_mnist,
    description="public SVHN (train, grayscale) -> private MNIST (60k/10k), 32x32x1, MNIST zero-padded 28->32",
    image_size=32, channels=1, num_classes=10, classifier="cnn",
)


# --- imagenet32-cifar10 -----------------------------------------------------------------------------

def to_cifar10_labels(devkit_labels: torch.Tensor) -> torch.Tensor:
    """ImageNet devkit ids (1..1000) of the Table I classes -> CIFAR-10 indices; any other id -> -1."""
    import torch

    table = torch.full((1001,), -1, dtype=torch.int64)
    for devkit_id, cifar in DEVKIT_TO_CIFAR10.items():
        table[devkit_id] = cifar
    return table[devkit_labels]


def one_percent_subset(labels: torch.Tensor, per_class: int = ONE_PERCENT_PER_CLASS, seed: int = ONE_PERCENT_SEED) -> torch.Tensor:
    """Sorted indices of `per_class` images per class, drawn without replacement by `seed`."""
    import torch

    rng = np.random.default_rng(seed)
    labels = labels.numpy()
    picks = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} train images, fewer than the {per_class} the 1% split draws")
        picks.append(rng.choice(members, per_class, replace=False))
    return torch.from_numpy(np.sort(np.concatenate(picks)))


def imagenet32_unconditional(root: Path, image_size: int = 32) -> Callable[..., object]:
    """The public pre-training stream over all of ImageNet32 train: call it (chunk_size=4096, seed=0)
    for an iterator of ImageSet chunks, labels 0..999 in devkit order (ILSVRC2012_ID - 1)."""
    from dpbench.data.readers import imagenet32_npz

    def stream(chunk_size: int = 4096, seed: int | None = 0):
        for chunk in imagenet32_npz.stream(root, "train", chunk_size=chunk_size, seed=seed):
            yield ImageSet(resize(chunk.images, image_size), chunk.labels)

    return stream


def _load_imagenet32_cifar10(root: Path, one_percent: bool) -> PairData:
    from dpbench.data.readers import cifar_pickle
    from dpbench.data.readers import imagenet32_npz

    ids = [c.devkit_id for c in TABLE_I]
    public, w1 = imagenet32_npz.select_classes(root, ids, "train")
    train, w2 = cifar_pickle.load_cifar10(root / CIFAR_DIR, "train")
    test, w3 = cifar_pickle.load_cifar10(root / CIFAR_DIR, "test")
    info = {
        "sources": {"public": "ImageNet32 npz (train)", "private": "CIFAR-10 python batches"},
        "image_format": "32x32x3, both native",
        "label_names": list(cifar_pickle.CLASS_NAMES),
        "imagenet_classes": [c._asdict() for c in TABLE_I],
        # Step 1 streams info["public_unconditional"](); step 2 trains class-conditionally on public_train.
        "public_pretraining": ["unconditional: all of ImageNet32 train", "class-conditional: the 10 Table I classes"],
        "public_unconditional": imagenet32_unconditional(root),
        "warnings": w1 + w2 + w3,
    }
    if one_percent:
        index = one_percent_subset(train.labels)
        train = train.subset(index)
        info.update(split_seed=ONE_PERCENT_SEED, private_subset=f"{ONE_PERCENT_PER_CLASS} per class, 1% of CIFAR-10 train")
    return PairData(ImageSet(public.images, to_cifar10_labels(public.labels)), train, test, info)


_CIFAR_SOURCES: Sources = {"ImageNet32": _imagenet32("train"), "CIFAR-10": _cifar}
_CIFAR_FIELDS = dict(image_size=32, channels=3, num_classes=10, classifier="resnet9")

IMAGENET32_CIFAR10 = _spec(
    "imagenet32-cifar10",
    _CIFAR_SOURCES,
    functools.partial(_load_imagenet32_cifar10, one_percent=False),
    description="public ImageNet32 (unconditional, then the 10 CIFAR-matched classes) -> private CIFAR-10 (50k/10k), 32x32x3",
    **_CIFAR_FIELDS,
)
IMAGENET32_CIFAR10_1PCT = _spec(
    "imagenet32-cifar10-1pct",
    _CIFAR_SOURCES,
    functools.partial(_load_imagenet32_cifar10, one_percent=True),
    description=f"as imagenet32-cifar10 with 1% of CIFAR-10 train ({ONE_PERCENT_PER_CLASS}/class, seed {ONE_PERCENT_SEED}), 32x32x3",
    **_CIFAR_FIELDS,
)


# --- imagenet-celeba --------------------------------------------------------------------------------

def _load_imagenet_celeba(root: Path, size: int, public: str, attribute: str) -> PairData:
    from dpbench.data.readers import celeba
    from dpbench.data.readers import image_folder
    from dpbench.data.readers import imagenet32_npz

    splits, warnings = celeba.load_celeba(root / CELEBA_DIR, size, attribute, ("train", "test"))
    if public == "imagenet32":
        sample, w = imagenet32_npz.load_split(root, "val")
        warnings += w
        public_train, unconditional = ImageSet(resize(sample.images, size), sample.labels), imagenet32_unconditional(root, size)
        source = "ImageNet32 npz (public_train: val's 50k; stream: train)"
    else:
        folder = root / FOLDER_DIR
        unconditional = functools.partial(image_folder.stream, folder, size)
        chunks = unconditional(chunk_size=PUBLIC_SAMPLE, seed=0)
        public_train = next(chunks, None)
        if public_train is None:
            raise DataMissingError(f"{folder}: holds no images")
        source = f"image folder {folder} (public_train: a seed-0 sample of up to {PUBLIC_SAMPLE})"
    return PairData(
        public_train=public_train,
        private_train=splits["train"],
        private_test=splits["test"],
        info={
            "sources": {"public": source, "private": "CelebA aligned jpgs, partitions 0 (train) / 2 (test)"},
            "image_format": f"{size}x{size}x3, CelebA center-cropped {celeba.DEFAULT_CROP}px then bicubic resize",
            "label_names": [f"not {attribute}", attribute],
            "attribute": attribute,
            "main_metric": "fid",
            # ImageNet labels (0..999) are not this pair's classes: pre-train unconditionally.
            "public_label_space": "imagenet-1k, devkit order minus 1" if public == "imagenet32" else "folder index",
            "public_pretraining": ["unconditional"],
            "public_unconditional": unconditional,
            "warnings": warnings,
        },
    )


def imagenet_celeba_pair(size: int = 32, public: str = "imagenet32", attribute: str = "Male", name: str | None = None) -> PairSpec:
    """public ImageNet (ImageNet32 npz, or public="folder" for <root>/imagenet_folder) -> private CelebA
    at size x size, labelled by `attribute`. At 64 from ImageNet32 the public images are upsampled."""
    if public not in ("imagenet32", "folder"):
        raise ValueError(f"public must be 'imagenet32' or 'folder', got {public!r}")
    sources: Sources = {"ImageNet32": _imagenet32("train", "val")} if public == "imagenet32" else {"ImageNet folder": _folder}
    sources["CelebA"] = _celeba
    return _spec(
        name or ("imagenet-celeba" if size == 32 else f"imagenet-celeba-{size}"),
        sources,
        functools.partial(_load_imagenet_celeba, size=size, public=public, attribute=attribute),
        description=f"public ImageNet ({public}) -> private CelebA {size}x{size} labelled by {attribute}; FID is the main metric",
        image_size=size, channels=3, num_classes=2, classifier="resnet9",
    )


IMAGENET_CELEBA = imagenet_celeba_pair(32)
IMAGENET_CELEBA_64 = imagenet_celeba_pair(64)

REAL_PAIRS = (SVHN_MNIST, IMAGENET32_CIFAR10, IMAGENET32_CIFAR10_1PCT, IMAGENET_CELEBA, IMAGENET_CELEBA_64)
