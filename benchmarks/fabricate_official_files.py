"""Write files of the real datasets' official formats, names, counts and split sizes, with synthetic content.

For testing what `dpbench data check` and `dpbench run` do at full size without the real downloads:

    python benchmarks/fabricate_official_files.py --out /tmp/fake-data --datasets mnist,svhn
    dpbench data check --pair svhn-mnist --data-root /tmp/fake-data

The content is sklearn's 1,797 8x8 digits, upscaled, drawn at small random shifts (up to +-2 px) with a
per-image contrast and Gaussian noise, in random colours for the RGB sets (CelebA's JPEGs: colours and shifts, no
added noise). Each base digit recurs dozens to hundreds of times, so near-duplicates abound (as in issue 24, which
asked for these files), and a classifier has something to learn (the label is the digit, or is derived from it). The layout is what the readers in
dpbench/data/readers/ expect (dpbench/builtins/real_pair_specs.py lists it):

    mnist       MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (.gz and uncompressed)  60,000 / 10,000
    svhn        svhn/{train,test}_32x32.mat  (X (32, 32, 3, N) uint8, y (N, 1) 1..10)           73,257 / 26,032
    cifar10     cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta (pickles)         50,000 / 10,000
    imagenet32  Imagenet32_train_npz/train_data_batch_1..10.npz, Imagenet32_val_npz/val_data.npz
                ('data' (N, 3072) uint8, 'labels' 1..1000; train batches also 'mean')        1,281,167 / 50,000
    celeba      celeba/img_align_celeba/000001.jpg..202599.jpg (178x218), list_attr_celeba.txt,
                list_eval_partition.txt                                                       202,599 (162,770 /
                                                                                               19,867 / 19,962)

Sizes on disk: mnist 89 MB, svhn 306 MB, cifar10 280 MB, imagenet32 4.1 GB, celeba 825 MB. The MD5s differ
from the official releases', which the readers accept with a warning. Nothing this writes is meant to be
committed.
"""
from __future__ import annotations

import argparse
import gzip
import pickle
import sys
import time
from pathlib import Path

import numpy as np

DATASETS = ("mnist", "svhn", "cifar10", "imagenet32", "celeba")
MAX_SHIFT = 2
CHUNK = 16_384


class Digits:
    """sklearn's digits upscaled once to `digit` px as float32 masks in [0, 1], drawn on an (h, w) canvas at a
    random shift of up to MAX_SHIFT px each way."""

    def __init__(self, canvas: tuple[int, int], digit: int):
        import torch
        import torch.nn.functional as F
        from sklearn.datasets import load_digits

        data = load_digits()
        base = torch.from_numpy(data.images.astype(np.float32) / 16.0)[:, None]
        self.big = F.interpolate(base, size=(digit, digit), mode="bicubic", align_corners=False).clamp(0, 1)[:, 0].numpy()
        self.labels = data.target.astype(np.int64)
        self.canvas, self.digit = canvas, digit

    def draw(self, rng: np.random.Generator, n: int, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(masks (n, h, w) float32, digit labels (n,)); with `labels`, a base digit of each given label."""
        if labels is None:
            index = rng.integers(0, len(self.labels), n)
        else:
            by_label = [np.flatnonzero(self.labels == d) for d in range(10)]
            index = np.empty(n, dtype=np.int64)
            for d in range(10):
                where = np.flatnonzero(labels == d)
                index[where] = rng.choice(by_label[d], len(where))
        (h, w), size = self.canvas, self.digit
        top, left = (h - size) // 2, (w - size) // 2
        dy, dx = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, (2, n))
        masks = np.zeros((n, h, w), dtype=np.float32)
        for y in range(-MAX_SHIFT, MAX_SHIFT + 1):
            for x in range(-MAX_SHIFT, MAX_SHIFT + 1):
                where = np.flatnonzero((dy == y) & (dx == x))
                masks[where, top + y:top + y + size, left + x:left + x + size] = self.big[index[where]]
        return masks, self.labels[index]


def grey_images(digits: Digits, rng, n, labels=None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, h, w): a white digit on black (as MNIST), contrast 0.8-1, noise sigma 6."""
    masks, digit = digits.draw(rng, n, labels)
    contrast = rng.uniform(0.8, 1.0, (n, 1, 1)).astype(np.float32)
    pixels = masks * contrast * 255 + rng.normal(0, 6, masks.shape).astype(np.float32)
    return np.clip(pixels, 0, 255).round().astype(np.uint8), digit


def colour_images(digits: Digits, rng, n, labels=None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, h, w, 3): a digit of one random colour on a background of another, noise sigma 6."""
    masks, digit = digits.draw(rng, n, labels)
    background = rng.uniform(0, 255, (n, 1, 1, 3)).astype(np.float32)
    foreground = rng.uniform(0, 255, (n, 1, 1, 3)).astype(np.float32)
    foreground = np.where(np.abs(foreground - background).sum(-1, keepdims=True) < 150, 255 - background, foreground)
    pixels = background + (foreground - background) * masks[..., None]
    pixels += rng.normal(0, 6, pixels.shape).astype(np.float32)
    return np.clip(pixels, 0, 255).round().astype(np.uint8), digit


def chunked(make, digits, rng, n, labels=None):
    parts, digit_parts = [], []
    for start in range(0, n, CHUNK):
        images, d = make(digits, rng, min(CHUNK, n - start), None if labels is None else labels[start:start + CHUNK])
        parts.append(images)
        digit_parts.append(d)
    return np.concatenate(parts), np.concatenate(digit_parts)


# --- writers ----------------------------------------------------------------------------------------------

def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_mnist(out: Path, rng) -> None:
    raw = out / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    digits = Digits((28, 28), 20)
    for prefix, n in (("train", 60_000), ("t10k", 10_000)):
        images, labels = chunked(grey_images, digits, rng, n)
        for stem, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = idx_bytes(array)
            (raw / stem).write_bytes(data)
            (raw / f"{stem}.gz").write_bytes(gzip.compress(data, compresslevel=6))


def write_svhn(out: Path, rng) -> None:
    import scipy.io

    folder = out / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    digits = Digits((32, 32), 22)
    for split, n in (("train", 73_257), ("test", 26_032)):
        images, labels = chunked(colour_images, digits, rng, n)
        x = np.ascontiguousarray(images.transpose(1, 2, 3, 0))  # (N, 32, 32, 3) -> (32, 32, 3, N)
        y = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(-1, 1)  # SVHN: 10 means the digit 0
        del images
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y}, do_compression=False)


CIFAR_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_cifar10(out: Path, rng) -> None:
    folder = out / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    digits = Digits((32, 32), 22)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        images, labels = chunked(colour_images, digits, rng, 10_000)
        batch = {b"batch_label": f"{'testing' if k == 5 else 'training'} batch {k % 5 + 1} of 5".encode(),
                 b"labels": [int(v) for v in labels],
                 b"data": np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), 3072)),
                 b"filenames": [f"synthetic_{k}_{i:05d}.png".encode() for i in range(len(images))]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"num_cases_per_batch": 10_000, b"label_names": [n.encode() for n in CIFAR_NAMES],
                     b"num_vis": 3072}, f, protocol=2)


IMAGENET32_TRAIN_BATCHES = (128_116,) * 9 + (128_123,)  # 1,281,167 in all, as the npz release splits them


def write_imagenet32(out: Path, rng) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dpbench.builtins.imagenet_classes import DEVKIT_TO_CIFAR10

    digit_of = np.array([DEVKIT_TO_CIFAR10.get(i, i % 10) for i in range(1001)])  # devkit id -> drawn digit
    digits = Digits((32, 32), 22)
    for folder, files in (("Imagenet32_train_npz", [(f"train_data_batch_{i + 1}.npz", n) for i, n in
                                                    enumerate(IMAGENET32_TRAIN_BATCHES)]),
                          ("Imagenet32_val_npz", [("val_data.npz", 50_000)])):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for name, n in files:
            labels = rng.integers(1, 1001, n)
            images, _ = chunked(colour_images, digits, rng, n, digit_of[labels])
            data = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(n, 3072))
            del images
            arrays = {"data": data, "labels": labels.astype(np.int64)}
            if folder.endswith("train_npz"):
                arrays["mean"] = data.mean(axis=0)
            np.savez(out / folder / name, **arrays)


CELEBA_ATTRIBUTES = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
                     "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
                     "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
                     "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
                     "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie "
                     "Young").split()
CELEBA_SPLITS = (162_770, 19_867, 19_962)  # train / valid / test, 202,599 in all


def write_celeba(out: Path, rng) -> None:
    """202,599 aligned 178x218 JPEGs: a digit in one random colour on another, pasted by PIL (per-pixel numpy
    work and noise would take the better part of an hour here; the JPEG coding varies the pixels instead)."""
    from PIL import Image

    folder = out / "celeba"
    images_dir = folder / "img_align_celeba"
    images_dir.mkdir(parents=True, exist_ok=True)
    n = sum(CELEBA_SPLITS)
    digits = Digits((218, 178), 100)  # the digit sits inside the 140 px centre crop the reader takes
    stencils = [Image.fromarray((mask * 255).round().astype(np.uint8), "L") for mask in digits.big]
    index = rng.integers(0, len(stencils), n)
    shift = rng.integers(-MAX_SHIFT * 4, MAX_SHIFT * 4 + 1, (n, 2))  # +-8 px: about +-2 px at the 32 px the pair uses
    colours = rng.integers(0, 256, (n, 2, 3))
    far = np.abs(colours[:, 0] - colours[:, 1]).sum(axis=1) >= 150
    colours[~far, 1] = 255 - colours[~far, 0]
    attributes = rng.choice(np.array([-1, 1], dtype=np.int8), (n, len(CELEBA_ATTRIBUTES)))
    attributes[:, CELEBA_ATTRIBUTES.index("Male")] = np.where(digits.labels[index] % 2 == 1, 1, -1)
    files = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    left, top = (178 - digits.digit) // 2, (218 - digits.digit) // 2
    for k in range(n):
        image = Image.new("RGB", (178, 218), tuple(colours[k, 0].tolist()))
        image.paste(tuple(colours[k, 1].tolist()), (left + int(shift[k, 1]), top + int(shift[k, 0])), stencils[index[k]])
        image.save(images_dir / files[k], quality=90)
    rows = [f"{f} " + " ".join(f"{v:2d}" for v in a) for f, a in zip(files, attributes.tolist())]
    (folder / "list_attr_celeba.txt").write_text(f"{n}\n" + " ".join(CELEBA_ATTRIBUTES) + "\n" + "\n".join(rows) + "\n")
    partition = np.repeat([0, 1, 2], CELEBA_SPLITS)
    (folder / "list_eval_partition.txt").write_text("".join(f"{f} {p}\n" for f, p in zip(files, partition)))


WRITERS = {"mnist": write_mnist, "svhn": write_svhn, "cifar10": write_cifar10, "imagenet32": write_imagenet32,
           "celeba": write_celeba}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="The data root to write (created if missing).")
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"Comma-separated subset of {','.join(DATASETS)}.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    chosen = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = sorted(set(chosen) - set(DATASETS))
    if unknown:
        parser.error(f"unknown datasets {unknown}; choose from {','.join(DATASETS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(chosen):
        began = time.perf_counter()
        WRITERS[name](args.out, np.random.default_rng([args.seed, DATASETS.index(name)]))
        print(f"{name}: written under {args.out} in {time.perf_counter() - began:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
