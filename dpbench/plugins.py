"""The plugin manager: built-ins and third parties both arrive through the entry-point group "dpbench"."""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from dpbench import hookspecs
from dpbench.data.types import PairSpec
from dpbench.interface import Evaluator, Method

ENTRY_POINT_GROUP = "dpbench"


class UnknownNameError(KeyError):
    """An unknown method, pair or evaluator name; the message carries a did-you-mean suggestion."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        self.message = f"unknown {kind} '{name}'.{hint} Known {kind}s: {', '.join(sorted(known)) or 'none'}."
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


@dataclass
class LoadedPlugin:
    name: str
    module: str
    distribution: str | None
    version: str | None
    error: str | None = None
    provides: list[str] = field(default_factory=list)


@dataclass
class Registry:
    methods: dict[str, Method] = field(default_factory=dict)
    pairs: dict[str, PairSpec] = field(default_factory=dict)
    evaluators: dict[str, Evaluator] = field(default_factory=dict)
    plugins: list[LoadedPlugin] = field(default_factory=list)
    # which plugin registered each "kind:name", for records and `dpbench plugins`
    origin: dict[str, LoadedPlugin] = field(default_factory=dict)

    def method(self, name: str) -> Method:
        return self._get("method", self.methods, name)

    def pair(self, name: str) -> PairSpec:
        return self._get("pair", self.pairs, name)

    def evaluator(self, name: str) -> Evaluator:
        return self._get("evaluator", self.evaluators, name)

    @staticmethod
    def _get(kind: str, table: dict, name: str) -> Any:
        if name not in table:
            raise UnknownNameError(kind, name, list(table))
        return table[name]


def _collector(registry: Registry, kind: str, table: dict, expected: type, plugin: LoadedPlugin):
    def register(obj: Any) -> None:
        if not isinstance(obj, expected):
            raise TypeError(f"plugin {plugin.name} registered {obj!r} as a {kind}; expected a {expected.__name__}")
        if not obj.name:
            raise ValueError(f"plugin {plugin.name} registered a {kind} without a name")
        if obj.name in table:
            raise ValueError(f"{kind} '{obj.name}' registered twice (by {registry.origin[kind + ':' + obj.name].name} and {plugin.name})")
        table[obj.name] = obj
        registry.origin[f"{kind}:{obj.name}"] = plugin
        plugin.provides.append(f"{kind}:{obj.name}")

    return register


def _register_from(registry: Registry, pm: pluggy.PluginManager, module: Any, plugin: LoadedPlugin) -> None:
    """Run one plugin's hooks. On any error, undo what it registered so a broken plugin leaves no trace."""
    snapshot = (dict(registry.methods), dict(registry.pairs), dict(registry.evaluators))
    try:
        pm.register(module, name=plugin.name)
        hooks = [
            ("method", registry.methods, Method, pm.hook.dpbench_register_methods),
            ("pair", registry.pairs, PairSpec, pm.hook.dpbench_register_pairs),
            ("evaluator", registry.evaluators, Evaluator, pm.hook.dpbench_register_evaluators),
        ]
        for kind, table, expected, hook in hooks:
            caller = pm.subset_hook_caller(hook.name, remove_plugins=[p for p in pm.get_plugins() if p is not module])
            caller(register=_collector(registry, kind, table, expected, plugin))
    except Exception as exc:  # a broken plugin is reported and skipped, never fatal
        registry.methods, registry.pairs, registry.evaluators = snapshot
        for key in plugin.provides:
            registry.origin.pop(key, None)
        plugin.provides.clear()
        plugin.error = f"{type(exc).__name__}: {exc}"
        if pm.is_registered(module):
            pm.unregister(module)


def load_registry(extra_modules: list[Any] | None = None) -> Registry:
    """Load every plugin of the entry-point group, then `extra_modules` (used by tests and embedders)."""
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        plugin = LoadedPlugin(
            name=ep.name, module=ep.value,
            distribution=dist.metadata["Name"] if dist else None, version=dist.version if dist else None,
        )
        registry.plugins.append(plugin)
        try:
            module = ep.load()
        except Exception as exc:
            plugin.error = f"{type(exc).__name__}: {exc}"
            continue
        _register_from(registry, pm, module, plugin)
    for module in extra_modules or []:
        if isinstance(module, str):
            module = importlib.import_module(module)
        plugin = LoadedPlugin(name=getattr(module, "__name__", repr(module)), module=getattr(module, "__name__", "?"),
                              distribution=None, version=None)
        registry.plugins.append(plugin)
        _register_from(registry, pm, module, plugin)
    return registry
