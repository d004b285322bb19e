"""Tiny fixtures in each real dataset's distributed format, laid out under a data root as
dpbench.builtins.real_pair_specs documents. Nothing here downloads anything."""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from dpbench.builtins.imagenet_classes import TABLE_I

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_mnist(raw_dir: Path, n_train: int = 40, n_test: int = 20, gz: bool = True, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    raw_dir.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(1, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = _idx(array)
            if gz:
                (raw_dir / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (raw_dir / name).write_bytes(data)


def write_svhn(svhn_dir: Path, n: int = 30, seed: int = 1) -> None:
    """train_32x32.mat: X (32, 32, 3, N) uint8, y (N, 1) in 1..10 (10 is the digit 0), as released."""
    rng = np.random.default_rng(seed)
    svhn_dir.mkdir(parents=True, exist_ok=True)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).astype(np.float64).reshape(n, 1)
    scipy.io.savemat(svhn_dir / "train_32x32.mat", {"X": x, "y": y})


def _old_numpy_pickle(obj) -> bytes:
    """Protocol 2 naming numpy.core.multiarray, as the released batches (pickled under numpy 1) do."""
    return pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def write_cifar10(batches_dir: Path, per_batch: int = 110, n_test: int = 30, seed: int = 2) -> None:
    rng = np.random.default_rng(seed)
    batches_dir.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        batch = {
            "batch_label": f"{name} of fixture",
            "labels": [int(v) for v in rng.permutation(np.arange(n) % 10)],
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "filenames": [f"img_{i}.png" for i in range(n)],
        }
        (batches_dir / name).write_bytes(_old_numpy_pickle(batch))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
            "num_cases_per_batch": per_batch, "num_vis": 3072}
    (batches_dir / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def imagenet32_labels_for(batch: int, n: int) -> np.ndarray:
    """Every Table I class once per batch by its devkit id, its sorted-wnid index used as a devkit id
    (a decoy the right mapping must not pick), then other ids."""
    ids = [c.devkit_id for c in TABLE_I] + [c.sorted_index for c in TABLE_I]
    others = (1 + (7 * batch + 13 * i) % 1000 for i in range(10_000))
    rest = [v for v in others if v not in {c.devkit_id for c in TABLE_I}][: n - len(ids)]
    return np.asarray(ids + rest, dtype=np.int64)


def encode_label(data: np.ndarray, labels: np.ndarray) -> None:
    """Write each image's devkit label into its first two pixels, so a test can tell which was picked."""
    data[:, 0], data[:, 1] = labels // 256, labels % 256


def write_imagenet32(root: Path, n_per_batch: int = 40, n_val: int = 25, compressed: bool = False, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    save = np.savez_compressed if compressed else np.savez
    (root / "Imagenet32_train_npz").mkdir(parents=True, exist_ok=True)
    (root / "Imagenet32_val_npz").mkdir(parents=True, exist_ok=True)
    for b in range(1, 11):
        labels = imagenet32_labels_for(b, n_per_batch)
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        encode_label(data, labels)
        save(root / "Imagenet32_train_npz" / f"train_data_batch_{b}.npz", data=data, labels=labels, mean=data.mean(0))
    labels = 1 + np.arange(n_val) * 37 % 1000
    data = rng.integers(0, 256, size=(n_val, 3072), dtype=np.uint8)
    encode_label(data, labels)
    save(root / "Imagenet32_val_npz" / "val_data.npz", data=data, labels=labels)


def write_celeba(celeba_dir: Path, n: int = 12, seed: int = 4) -> dict[str, list[int]]:
    """img_align_celeba/*.jpg (178x218) with the attribute and partition files; returns Male per partition."""
    rng = np.random.default_rng(seed)
    (celeba_dir / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    attr_lines, part_lines, male = [str(n), " ".join(CELEBA_ATTRIBUTES) + " "], [], {"train": [], "valid": [], "test": []}
    for i in range(1, n + 1):
        name = f"{i:06d}.jpg"
        pixels = rng.integers(0, 256, size=(218, 178, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(celeba_dir / "img_align_celeba" / name, quality=90)
        values = rng.choice([-1, 1], size=len(CELEBA_ATTRIBUTES))
        attr_lines.append(name + " " + " ".join(f"{v:2d}" for v in values))  # the real file's "-1  1" spacing
        split = (2, 0, 0, 0, 1)[i % 5]
        part_lines.append(f"{name} {split}")
        male[("train", "valid", "test")[split]].append(int(values[CELEBA_ATTRIBUTES.index("Male")] == 1))
    (celeba_dir / "list_attr_celeba.txt").write_text("\n".join(attr_lines) + "\n")
    (celeba_dir / "list_eval_partition.txt").write_text("\n".join(part_lines) + "\n")
    return male


def write_all(root: Path) -> Path:
    write_mnist(root / "MNIST" / "raw")
    write_svhn(root / "svhn")
    write_cifar10(root / "cifar-10-batches-py")
    write_imagenet32(root)
    write_celeba(root / "celeba")
    return root
