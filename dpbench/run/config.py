"""What a run's config hash covers, and where its record goes.

The hash covers the whole normalised config: the method's resolved settings (nested ones included), the preset,
the pair and its data digest, δ, the evaluators' settings, the noise source, the audit, the engine's automatic
per-example order, the backbone's recipe, and the caps (--max-steps, --max-samples) when any is set. ε and the seed have folders of their own; the code version is
recorded in the record's `env`, not hashed. CONFIG_VERSION changes when what is hashed changes.
"""
from __future__ import annotations

from pathlib import Path

from dpbench.api.settings import as_dict
from dpbench.privacy.per_example.choice import AUTO_ORDER
from dpbench.run.records import run_dir
from dpbench.run.request import RunRequest, run_caps
from dpbench.run.resolve import Resolved
from dpbench.storage import cache_key

CONFIG_VERSION = 2


def run_config(request: RunRequest, resolved: Resolved, digest: str) -> dict:
    backbone = resolved.backbone
    config = {
        "config_version": CONFIG_VERSION, "method": resolved.method.name, "settings": as_dict(resolved.settings),
        "preset": request.preset, "pair": resolved.pair.name, "data_digest": digest, "delta": request.delta,
        "evaluators": {e.name: e.settings(request.preset) for e in resolved.evaluators}, "rng": request.rng,
        "audit": request.audit.to_dict() if request.audit is not None else None,
        "per_example_auto": list(AUTO_ORDER),
        "backbone_recipe": {backbone.name: getattr(backbone, "recipe_version", None)} if backbone is not None else None,
    }
    if caps := run_caps(request):  # only when set: an uncapped run keeps the hash it always had
        config["caps"] = caps
    return config


def run_location(request: RunRequest, resolved: Resolved, digest: str) -> tuple[dict, str, Path]:
    """The run's config, its config hash and the folder its record goes to (a sweep looks there before running)."""
    config = run_config(request, resolved, digest)
    config_hash = cache_key(config, length=10)
    return config, config_hash, run_dir(request.out, resolved.pair.name, resolved.method.name, request.preset,
                                        config_hash, request.epsilon, request.seed)
