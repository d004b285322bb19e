"""Resolve a request: look the method, pair, evaluators and backbone up, and settle the method's settings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dpbench.api.registry import Registry
from dpbench.api.settings import SettingError, apply_overrides, check
from dpbench.api.types import PRESETS, Method
from dpbench.run.request import RunInputError, RunRequest, validate_budget


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
    names = request.evaluators if request.evaluators is not None else list(registry.evaluators)
    evaluators = [e for e in (registry.evaluator(name) for name in names) if method.produces in e.applies_to]
    settings = method_settings(registry, method, request.preset, pair, request.overrides)
    backbone_name = getattr(settings, "backbone", None)
    backbone = registry.backbone(backbone_name) if backbone_name in registry.backbones else None
    return Resolved(method, pair, evaluators, settings, backbone)


def method_settings(registry: Registry, method: Method, preset: str, pair, overrides: dict) -> Any:
    """The preset's settings with `--set` applied: plain keys first, then the method completes its nested
    settings (a scope's), then PREFIX.KEY keys; every value checked, then the method's own validation."""
    plain = {k: v for k, v in overrides.items() if "." not in k}
    dotted = {k: v for k, v in overrides.items() if "." in k}
    try:
        settings = method.settings(preset, pair)
        check(settings)
        settings = apply_overrides(settings, plain)
        settings = apply_overrides(method.complete_settings(settings, registry), dotted)
        method.validate(settings, registry)
    except (SettingError, ValueError, TypeError, KeyError) as exc:
        raise RunInputError(f"bad setting for method '{method.name}': {exc}") from exc
    return settings
