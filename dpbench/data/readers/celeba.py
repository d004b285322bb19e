"""CelebA, aligned-and-cropped version: <celeba_dir>/img_align_celeba/*.jpg (178x218),
list_attr_celeba.txt (count line, 40 attribute names, then "<file> ±1 x40") and
list_eval_partition.txt ("<file> 0|1|2" for train/valid/test).

Images are center-cropped to a square (default 140 px, the face region; the crop used by the score-SDE
and DPDM CelebA pipelines) and resized with PIL's bicubic filter, which antialiases when shrinking.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dpbench.data.readers._common import CorruptFileError, count_warning, md5_warning, status_of
from dpbench.data.types import FileStatus, ImageSet

IMAGE_DIR, ATTR_FILE, PARTITION_FILE = "img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt"
PARTITIONS = {"train": 0, "valid": 1, "test": 2}
OFFICIAL_COUNT = {"all": 202_599, "train": 162_770, "valid": 19_867, "test": 19_962}
OFFICIAL_MD5 = {ATTR_FILE: "75e246fa4810816ffd6ee81facbd244c", PARTITION_FILE: "d32c9cbf5e040fd4025c592c306e6668"}
DEFAULT_CROP = 140
DECODE_CHUNK = 2048  # images a worker decodes per task: few round trips, at most ~25 MB of uint8 back at 64 px


def read_attributes(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """(file names, attribute names, values in {-1, 1} as int8 (N, A)) with the header's count checked."""
    path = Path(path)
    lines = path.read_text().splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise CorruptFileError(path, "first line must be the image count, second the attribute names")
    count, names = int(lines[0]), lines[1].split()
    rows = [line for line in lines[2:] if line.strip()]
    if len(rows) != count:
        raise CorruptFileError(path, f"header announces {count} images, file lists {len(rows)} (truncated?)")
    if not rows:
        return [], names, np.zeros((0, len(names)), dtype=np.int8)
    try:  # numpy's C parser: ~0.3 s for the full 202,599 rows
        values = np.loadtxt(rows, dtype=np.int8, usecols=range(1, len(names) + 1), ndmin=2)
    except ValueError as exc:
        raise CorruptFileError(path, f"malformed attribute rows, expected '<file>' and {len(names)} values ({exc})") from None
    if not np.isin(values, (-1, 1)).all():
        raise CorruptFileError(path, "attribute values must be -1 or 1")
    return [r.split(maxsplit=1)[0] for r in rows], names, values


def read_partition(path: str | Path) -> dict[str, int]:
    path = Path(path)
    out = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise CorruptFileError(path, f"line {i} is {line!r}, expected '<file>.jpg 0|1|2'")
        out[parts[0]] = int(parts[1])
    return out


def decode(path: Path, size: int, crop: int = DEFAULT_CROP) -> np.ndarray:
    """One image, center-cropped to a crop x crop square (at most the short side) and resized: uint8 (3, size, size).

    A JPEG is decoded at the smallest of libjpeg's DCT scales (1/2, 1/4, 1/8) that keeps the crop at least twice
    `size` (as Pillow's own `thumbnail` does), so the bicubic resize still shrinks it by 2x or more: at 32 px the
    140 px crop is decoded at 1/2, which takes CelebA's 182,732 train + test decodes from ~110 s to ~65 s of CPU
    (benchmarks/RESULTS.md, issue 24); at 64 px nothing changes."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            c = min(crop, w, h)
            left, top = (w - c) // 2, (h - c) // 2
            scale = 1
            while scale < 8 and c / (2 * scale) >= 2 * size:
                scale *= 2
            if scale > 1:
                img.draft("RGB", (w // scale, h // scale))  # JPEG only; other formats ignore it
            kx, ky = w / img.size[0], h / img.size[1]
            img = img.convert("RGB")
            if (kx, ky) == (1, 1):
                img = img.crop((left, top, left + c, top + c)).resize((size, size), Image.BICUBIC)
            else:  # the same crop, in the reduced image's coordinates
                img = img.resize((size, size), Image.BICUBIC, box=(left / kx, top / ky, (left + c) / kx, (top + c) / ky))
            return np.array(img, dtype=np.uint8).transpose(2, 0, 1)
    except OSError as exc:
        raise CorruptFileError(path, f"not a readable image ({exc})") from None


def _decode_chunk(paths: list[Path], size: int, crop: int) -> np.ndarray:
    return np.stack([decode(p, size, crop) for p in paths])


def decode_all(paths: list[Path], size: int, crop: int = DEFAULT_CROP) -> np.ndarray:
    """uint8 (N, 3, size, size), in `paths`' order. Worker processes decode chunks of DECODE_CHUNK files: with
    threads, Python's share of each decode (open, crop, copy) holds the GIL, and 2 threads on 2 cores loaded CelebA's
    182,732 train + test images in 86 s against 37.5 s for 2 processes (benchmarks/RESULTS.md, issue 24)."""
    images = np.zeros((len(paths), 3, size, size), dtype=np.uint8)
    chunks = [paths[i:i + DECODE_CHUNK] for i in range(0, len(paths), DECODE_CHUNK)]
    workers = min(os.cpu_count() or 1, len(chunks))
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        decoded = (_decode_chunk(chunk, size, crop) for chunk in chunks)
        return _fill(images, decoded)
    # fork: the workers need nothing but PIL and the paths, and skip re-importing torch
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return _fill(images, pool.map(_decode_chunk, chunks, [size] * len(chunks), [crop] * len(chunks)))


def _fill(images: np.ndarray, chunks) -> np.ndarray:
    start = 0
    for chunk in chunks:
        images[start:start + len(chunk)] = chunk
        start += len(chunk)
    return images


def _index(celeba_dir: Path, attribute: str) -> tuple[list[str], np.ndarray, dict[str, int]]:
    files, names, values = read_attributes(celeba_dir / ATTR_FILE)
    if attribute not in names:
        raise ValueError(f"unknown CelebA attribute {attribute!r}; {ATTR_FILE} has {names}")
    partition = read_partition(celeba_dir / PARTITION_FILE)
    unpartitioned = [f for f in files if f not in partition]
    if unpartitioned:
        raise CorruptFileError(celeba_dir / PARTITION_FILE, f"{len(unpartitioned)} images of {ATTR_FILE} have no partition, e.g. {unpartitioned[0]}")
    labels = (values[:, names.index(attribute)].astype(np.int64) + 1) // 2  # -1/1 -> 0/1
    return files, labels, partition


def load_celeba(
    celeba_dir: str | Path, size: int, attribute: str = "Male", splits=("train", "test"), crop: int = DEFAULT_CROP
) -> tuple[dict[str, ImageSet], list[str]]:
    """The requested partitions as uint8 (N, 3, size, size), labelled 0/1 by `attribute`, plus warnings."""
    celeba_dir = Path(celeba_dir)
    for name in (ATTR_FILE, PARTITION_FILE, IMAGE_DIR):
        if not (celeba_dir / name).exists():
            raise FileNotFoundError(f"{celeba_dir / name} is missing")
    files, labels, partition = _index(celeba_dir, attribute)
    warnings = [w for w in (md5_warning(celeba_dir / n, m) for n, m in OFFICIAL_MD5.items()) if w]
    if w := count_warning("CelebA", len(files), OFFICIAL_COUNT["all"]):
        warnings.append(w)
    out = {}
    for split in splits:
        keep = [i for i, f in enumerate(files) if partition[f] == PARTITIONS[split]]
        paths = [celeba_dir / IMAGE_DIR / files[i] for i in keep]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} CelebA images listed in {ATTR_FILE} are missing, e.g. {missing[0]}")
        images = decode_all(paths, size, crop)
        out[split] = ImageSet(torch.from_numpy(images), torch.from_numpy(labels[keep]))
        if w := count_warning(f"CelebA {split}", len(keep), OFFICIAL_COUNT[split]):
            warnings.append(w)
    return out, warnings


def check_celeba(celeba_dir: str | Path, deep: bool = True) -> list[FileStatus]:
    celeba_dir = Path(celeba_dir)

    def probe_images(path: Path) -> str:
        if not path.is_dir():
            raise CorruptFileError(path, "is not a directory")
        present = {e.name for e in os.scandir(path)}
        if (celeba_dir / ATTR_FILE).is_file():
            listed = read_attributes(celeba_dir / ATTR_FILE)[0]
            missing = [f for f in listed if f not in present]
            if missing:
                raise CorruptFileError(path, f"{len(missing)} of the {len(listed)} images in {ATTR_FILE} are missing, e.g. {missing[0]}")
        return f"{len(present)} files"

    return [
        status_of(celeba_dir / IMAGE_DIR, probe_images, deep),
        status_of(celeba_dir / ATTR_FILE, lambda p: (read_attributes(p), md5_warning(p, OFFICIAL_MD5[ATTR_FILE], with_path=False))[1], deep),
        status_of(celeba_dir / PARTITION_FILE, lambda p: (read_partition(p), md5_warning(p, OFFICIAL_MD5[PARTITION_FILE], with_path=False))[1], deep),
    ]
