"""`dpbench pretrain`: train a pair's public backbone by its recipe and write it, with the recipe, for shipping."""
from __future__ import annotations

import json
import time
from pathlib import Path

from dpbench.api.context import MethodContext
from dpbench.api.registry import Registry
from dpbench.devices import resolve_device


class CappedExportError(ValueError):
    """A capped pre-training (--max-steps) asked to write into the shipped-weights folder."""


def export_backbone(registry: Registry, *, pair: str, backbone: str, preset: str, output: Path | None,
                    cache_dir: Path, device: str, data_root: str | None, progress,
                    max_steps: int | None = None) -> dict:
    """Pre-train on the public split only (the context holds no private data) and export; returns a summary.
    With `max_steps`, every pre-training phase stops there (a trial of a big preset): its recipe says so, and it is
    written only to an `output` folder of the user's, never over the shipped weights."""
    if max_steps is not None and output is None:
        raise CappedExportError("a pre-training capped by --max-steps is a trial, not the preset's backbone: pass "
                                "--out FOLDER (it is never written over the shipped weights)")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise CappedExportError(f"max_steps must be an int >= 1, got {max_steps!r}")
    spec, builder = registry.pair(pair), registry.backbone(backbone)
    data = spec.load(data_root)
    ctx = MethodContext(pair=spec, public=data.public_train, public_info=dict(data.info), private=None, books=None,
                        registry=registry, epsilon=0.0, delta=1e-5, seed=0, device=resolve_device(device),
                        preset=preset, progress=progress, cache_dir=cache_dir, rebuild_backbone=True,
                        max_steps=max_steps)
    started = time.perf_counter()
    paths = builder.export(ctx, Path(output) if output is not None else _default_dir(builder))
    meta = json.loads(Path(paths[-1]).read_text()) if str(paths[-1]).endswith(".json") else {}
    return {"pair": pair, "backbone": backbone, "preset": preset, "max_steps": max_steps, "files": [str(p) for p in paths],
            "seconds": round(time.perf_counter() - started, 1), "train_seconds": meta.get("train_seconds")}


def _default_dir(builder) -> Path:
    """Where the builder's package keeps its shipped weights (its `weights/` folder)."""
    import importlib

    module = importlib.import_module(type(builder).__module__)
    return Path(module.__file__).with_name("weights")


def export_summary_line(summary: dict, pair: str, backbone: str, preset: str) -> str:
    """What `dpbench pretrain` prints: how long training took (or that a cache entry was reused) and the files."""
    trained = summary["train_seconds"]
    how = f"training took {trained:.0f} s" if trained is not None else "training time not recorded"
    if trained is None or summary["seconds"] < trained:
        how += f" (reused the local cache entry; this command took {summary['seconds']:.0f} s)"
    return f"pre-trained {backbone} for {pair} ({preset}): {how}; wrote " + ", ".join(summary["files"])
