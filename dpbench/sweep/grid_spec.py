"""The sweep's grid: which cells there are, and which `--set` key goes to which method."""
from __future__ import annotations

import math
from dataclasses import dataclass

from dpbench.api.registry import Registry
from dpbench.api.settings import SettingError, apply_overrides, fields_of, valid_keys
from dpbench.run.records import epsilon_label


class SweepInputError(ValueError):
    """Bad sweep input, found before any cell runs (CLI exit 2)."""


@dataclass(frozen=True)
class Cell:
    """One run of the grid; `overrides` are the `--set` pairs that apply to its method, as text."""

    method: str
    pair: str
    epsilon: float
    seed: int
    overrides: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        return f"{self.pair} {self.method} eps={epsilon_label(self.epsilon)} seed={self.seed}"


def parse_names(text: str, option: str) -> list[str]:
    """'a,b' -> ['a', 'b'] (order kept, repeats dropped)."""
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise SweepInputError(f"{option}: expected a comma-separated list, got '{text}'")
    return names


def parse_epsilons(text: str) -> list[float]:
    """'1,5,inf' -> [1.0, 5.0, inf]; each ε is checked against its method when the cells are planned."""
    values = []
    for part in parse_names(text, "--eps"):
        try:
            value = float(part)
        except ValueError:
            raise SweepInputError(f"--eps: '{part}' is not a number (use 'inf' for a non-private run)") from None
        if math.isnan(value):
            raise SweepInputError("--eps: nan is not a privacy budget")
        values.append(value)
    return list(dict.fromkeys(values))


def parse_seeds(text: str) -> list[int]:
    seeds = []
    for part in parse_names(text, "--seeds"):
        if not part.isdigit():
            raise SweepInputError(f"--seeds: '{part}' is not a non-negative integer")
        seeds.append(int(part))
    return list(dict.fromkeys(seeds))


def reference_methods(registry: Registry) -> list[str]:
    """The registered methods that touch no private data (the public-only references), run at ε = 0."""
    return sorted(name for name, method in registry.methods.items() if not method.trains_on_private)


def overrides_by_method(registry: Registry, methods: list[str], overrides: dict[str, str]) -> dict[str, dict]:
    """Each method gets the `--set` keys its settings have (a scope's `scope.KEY` keys when its default preset's
    scope, or the scope the sweep sets, has them); a key that no method of the sweep has is an error."""
    keys_of = {name: _settable_keys(registry, name, overrides) for name in methods}
    for key in overrides:
        if not any(key in keys for keys in keys_of.values()):
            known = ", ".join(sorted(set().union(*keys_of.values())))
            raise SweepInputError(f"--set {key}: no method in this sweep ({', '.join(methods)}) has a setting "
                                  f"'{key}'. Their settings: {known}")
    return {name: {k: v for k, v in overrides.items() if k in keys} for name, keys in keys_of.items()}


def _settable_keys(registry: Registry, name: str, overrides: dict[str, str]) -> set[str]:
    method, registry = registry.method(name), registry.for_plugins()  # plugin code gets no pair loader
    pair = registry.pairs[sorted(registry.pairs)[0]] if registry.pairs else None
    settings = method.settings("default", pair)
    plain = {k: v for k, v in overrides.items() if "." not in k and k in fields_of(type(settings))}
    try:
        settings = method.complete_settings(apply_overrides(settings, plain), registry)
    except (SettingError, ValueError, KeyError):  # each cell's own check names the bad value
        return set(fields_of(type(settings)))
    return set(valid_keys(settings))


def expand_grid(registry: Registry, *, methods: list[str], pairs: list[str], epsilons: list[float],
                seeds: list[int], overrides: dict[str, str], references: bool) -> list[Cell]:
    """Every cell, pair by pair. With `references`, per pair and seed: each method at ε = ∞ (no DP) and each
    public-only reference method at ε = 0. Unknown names raise UnknownNameError (with a did-you-mean)."""
    for name in pairs:
        registry.pair(name)
    references_to_add = [name for name in reference_methods(registry) if name not in methods] if references else []
    per_method = overrides_by_method(registry, methods + references_to_add, overrides)
    method_epsilons = epsilons + [math.inf] if references else epsilons
    cells: dict[Cell, None] = {}
    for pair in pairs:
        for method in methods:
            trains_on_private = registry.method(method).trains_on_private
            for epsilon in method_epsilons if trains_on_private else epsilons:
                for seed in seeds:
                    cells[Cell(method, pair, epsilon, seed, tuple(per_method[method].items()))] = None
        for method in references_to_add:
            for seed in seeds:
                cells[Cell(method, pair, 0.0, seed, tuple(per_method[method].items()))] = None
    return list(cells)
