"""Public backbones shipped with a package: weights plus the recipe that trained them.

Beside each weights file `<name>.pt` lies `<name>.json`: the recipe (model config, training config, seed, a
digest of the public data, a recipe version that is bumped whenever the recipe changes), the weights' sha256,
and how long training took. Loading compares the recipe with what the code would train now and refuses a file
whose recipe differs, so a shipped backbone is always the one the current recipe produces.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from dpbench.storage import atomic_write_bytes, canonical_json

MAX_FILE_BYTES = 8 * 2**20  # the project ships at most 8 MB per file and 15 MB in all


class ShippedRecipeError(RuntimeError):
    """A shipped backbone whose recipe differs from what the code would train now."""


@dataclass(frozen=True)
class ShippedStore:
    """Where shipped weights live, and whether this run must ignore them and train locally."""

    directory: Path
    rebuild: bool = False

    def paths(self, name: str) -> tuple[Path, Path]:
        return Path(self.directory) / f"{name}.pt", Path(self.directory) / f"{name}.json"

    def load(self, name: str, recipe: dict, hint: str) -> dict | None:
        """The shipped state dict for `name`, None when there is none (or a rebuild is asked for)."""
        weights, meta_path = self.paths(name)
        if self.rebuild or not weights.exists() or not meta_path.exists():
            return None
        meta = json.loads(meta_path.read_text())
        if canonical_json(meta["recipe"]) != canonical_json(recipe):
            changed = sorted(k for k in set(recipe) | set(meta["recipe"]) if
                             canonical_json(recipe.get(k)) != canonical_json(meta["recipe"].get(k)))
            raise ShippedRecipeError(f"the shipped backbone {weights.name} was trained by another recipe (differs in "
                                     f"{', '.join(changed)}); {hint}")
        data = weights.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise ShippedRecipeError(f"{weights} does not match the sha256 in {meta_path.name}; {hint}")
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)

    def write(self, name: str, state_dict: dict, recipe: dict, extra: dict) -> tuple[Path, Path]:
        """Write weights and recipe atomically; refuse a file over the size limit in a package's weights folder
        (what a package ships; a folder of the user's, e.g. the paper preset's weights, takes any size)."""
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu().clone() for k, v in state_dict.items()}, buffer)
        data = buffer.getvalue()
        if len(data) > MAX_FILE_BYTES and (Path(self.directory).parent / "__init__.py").exists():
            raise ValueError(f"{name}: {len(data) / 2**20:.1f} MB is over the {MAX_FILE_BYTES / 2**20:.0f} MB limit "
                             "for a shipped file")
        weights, meta_path = self.paths(name)
        atomic_write_bytes(weights, data)
        meta = {"recipe": recipe, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), **extra}
        atomic_write_bytes(meta_path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
        return weights, meta_path
