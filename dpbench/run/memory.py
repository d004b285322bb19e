"""Host memory a run will need, estimated from its data, its sample count and a fixed allowance, checked before it
starts: a run that cannot fit is refused with the memory it needs instead of being killed by the kernel halfway.

The estimate counts what grows with the data and the settings: the loaded splits, the engine's float32 copy of the
private images (its `prepare` map), the synthetic set with the Inception features of it and of the FID reference,
and a float32 copy of the synthetic set for the downstream classifier. The model, one physical batch and the
interpreter with torch are a fixed allowance (ALLOWANCE): the engine's chunks (`physical_batch_size`) and the
sampling batch bound them whatever the data's size, but a wide model under vmap's per-example gradients can exceed it,
so the check catches the data-sized failures, not every one.
"""
from __future__ import annotations

import os
from pathlib import Path

from dpbench.run.request import RunInputError

MEMORY_LIMIT_ENV = "DPBENCH_MEMORY_LIMIT"  # bytes, or a number with KB/MB/GB/TB (1000s) or KiB/MiB/GiB (1024s)
ALLOWANCE = 2 * 2**30  # interpreter, torch, the model and one physical batch (the svhn-mnist data check peaks at 1.3 GB)
FEATURES = 2048 * 4  # one image's Inception pool3 features, float32
UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20,
         "gib": 2**30, "tib": 2**40}


class RunTooLargeError(RunInputError):
    """The run's estimated memory exceeds what this machine has (or DPBENCH_MEMORY_LIMIT allows)."""


def parse_bytes(text: str) -> int:
    number = text.strip().lower().rstrip("s")
    unit = number.lstrip("0123456789. ")
    try:
        value = float(number[:len(number) - len(unit)]) * UNITS[unit]
    except (ValueError, KeyError):
        raise RunInputError(f"${MEMORY_LIMIT_ENV}={text!r} is not a size (e.g. 24GB, 16GiB or a byte count)") from None
    return int(value)


def memory_limit() -> int:
    """$DPBENCH_MEMORY_LIMIT, else the smaller of the machine's physical memory and the cgroup's limit."""
    if os.environ.get(MEMORY_LIMIT_ENV):
        return parse_bytes(os.environ[MEMORY_LIMIT_ENV])
    limit = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    cgroup = Path("/sys/fs/cgroup/memory.max")
    if cgroup.is_file() and cgroup.read_text().strip().isdigit():
        limit = min(limit, int(cgroup.read_text()))
    return limit


def _bytes(tensor) -> int:
    return tensor.numel() * tensor.element_size()


def estimate(data, num_classes: int, samples_per_class: int | None, trains_on_private: bool) -> dict[str, int]:
    """Bytes per component (see the module's notes)."""
    splits = (data.public_train, data.private_train, data.private_test)
    parts = {"loaded data": sum(_bytes(s.images) + _bytes(s.labels) for s in splits)}
    if trains_on_private:
        parts["float32 copy of the private train images"] = data.private_train.images.numel() * 4
    if samples_per_class:
        n = samples_per_class * num_classes
        per_image = data.private_test.images[0].numel()
        parts["synthetic set (uint8, and float32 for the downstream classifier)"] = n * per_image * 5
        parts["Inception features of the synthetic set and the FID reference"] = (n + len(data.private_test)) * FEATURES
    parts["interpreter, torch, model and one physical batch (fixed allowance)"] = ALLOWANCE
    return parts


def check_fits(data, pair, settings, trains_on_private: bool) -> None:
    """RunTooLargeError, naming the memory needed and where it goes, when the estimate exceeds the limit."""
    parts = estimate(data, pair.num_classes, getattr(settings, "samples_per_class", None), trains_on_private)
    need, limit = sum(parts.values()), memory_limit()
    if need > limit:
        detail = "; ".join(f"{name} {size / 2**30:.2f} GiB" for name, size in parts.items())
        raise RunTooLargeError(
            f"pair '{pair.name}' needs about {need / 2**30:.1f} GiB of host memory, more than the {limit / 2**30:.1f} "
            f"GiB available ({detail}). Cap the synthetic set with --max-samples, use a machine with more memory, or "
            f"set ${MEMORY_LIMIT_ENV} if the limit is wrong.")
