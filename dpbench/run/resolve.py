"""Resolve a request: look the method, pair, evaluators and backbone up, and settle the method's settings."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dpbench.api.registry import Registry, pair_view
from dpbench.api.settings import SettingError, apply_overrides, check
from dpbench.api.types import PRESETS, Method
from dpbench.run.request import RunInputError, RunRequest, check_caps, validate_budget


@dataclass
class Resolved:
    method: Method
    pair: Any
    evaluators: list
    settings: Any
    backbone: Any = None  # the BackboneBuilder the settings name, when they name a registered one


def resolve(registry: Registry, request: RunRequest) -> Resolved:
    """Look everything up and check the inputs; raises before anything is written."""
    method = registry.method(request.method)
    pair = registry.pair(request.pair)
    if request.preset not in PRESETS:
        raise RunInputError(f"unknown preset '{request.preset}', expected one of {PRESETS}")
    validate_budget(request.epsilon, request.delta, method)
    check_caps(request)
    names = request.evaluators if request.evaluators is not None else list(registry.evaluators)
    evaluators = [e for e in (registry.evaluator(name) for name in names) if method.produces in e.applies_to]
    settings = capped_samples(method_settings(registry, method, request.preset, pair, request.overrides), pair,
                              request.max_samples)
    backbone_name = getattr(settings, "backbone", None)
    backbone = registry.backbone(backbone_name) if backbone_name in registry.backbones else None
    return Resolved(method, pair, evaluators, settings, backbone)


def method_settings(registry: Registry, method: Method, preset: str, pair, overrides: dict) -> Any:
    """The preset's settings with `--set` applied: plain keys first, then the method completes its nested
    settings (a scope's), then PREFIX.KEY keys; every value checked, then the method's own validation."""
    plain = {k: v for k, v in overrides.items() if "." not in k}
    dotted = {k: v for k, v in overrides.items() if "." in k}
    registry, pair = registry.for_plugins(), pair_view(pair)  # plugin code gets no pair loader
    try:
        settings = method.settings(preset, pair)
        check(settings)
        settings = apply_overrides(settings, plain)
        settings = apply_overrides(method.complete_settings(settings, registry), dotted)
        method.validate(settings, registry)
    except (SettingError, ValueError, TypeError, KeyError) as exc:
        raise RunInputError(f"bad setting for method '{method.name}': {exc}") from exc
    return settings


def capped_samples(settings: Any, pair, max_samples: int | None) -> Any:
    """A generator's `samples_per_class` lowered so the synthetic set (and with it FID's sample count) holds at most
    `max_samples` images; the settings as they are without a cap or when they are under it already."""
    per_class = getattr(settings, "samples_per_class", None)
    if max_samples is None or per_class is None:
        return settings
    if max_samples < pair.num_classes:
        raise RunInputError(f"--max-samples {max_samples} is fewer than one synthetic image for each of pair "
                            f"'{pair.name}''s {pair.num_classes} classes")
    return dataclasses.replace(settings, samples_per_class=min(per_class, max_samples // pair.num_classes))
