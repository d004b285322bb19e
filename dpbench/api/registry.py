"""The plugin registry: built-ins and third parties both arrive through the entry-point group "dpbench"."""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import os
from dataclasses import dataclass, field, fields, is_dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from dpbench.version import API_VERSION, MIGRATION_HINT, plugin_import_error  # noqa: F401 - re-exported

if TYPE_CHECKING:  # the API types import torch: loaded only when plugins are (`dpbench --help` loads neither)
    from dpbench.api.types import BackboneBuilder, Evaluator, Method, PublishedResult, Scope
    from dpbench.data.types import PairSpec

ENTRY_POINT_GROUP = "dpbench"
LOAD_PLUGINS_ENV = "DPBENCH_LOAD_PLUGINS"
# kind -> (registry table attribute, expected type's "module:name", hook name)
KINDS = {
    "method": ("methods", "dpbench.api.types:Method", "dpbench_register_methods"),
    "pair": ("pairs", "dpbench.data.types:PairSpec", "dpbench_register_pairs"),
    "evaluator": ("evaluators", "dpbench.api.types:Evaluator", "dpbench_register_evaluators"),
    "scope": ("scopes", "dpbench.api.types:Scope", "dpbench_register_scopes"),
    "backbone": ("backbones", "dpbench.api.types:BackboneBuilder", "dpbench_register_backbones"),
    "published": ("published", "dpbench.api.types:PublishedResult", "dpbench_published_results"),
}


def expected_type(kind: str) -> type:
    """The class a plugin's `kind` object must be an instance of (imported on first use)."""
    module, name = KINDS[kind][1].split(":")
    return getattr(importlib.import_module(module), name)


class UnknownNameError(KeyError):
    """An unknown method, pair or evaluator name; the message carries a did-you-mean suggestion."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        self.message = f"unknown {kind} '{name}'.{hint} Known {kind}s: {', '.join(sorted(known)) or 'none'}."
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class PluginAPIError(TypeError):
    """A plugin written for another version of the plugin API."""


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
    scopes: dict[str, Scope] = field(default_factory=dict)
    backbones: dict[str, BackboneBuilder] = field(default_factory=dict)
    published: dict[str, PublishedResult] = field(default_factory=dict)
    plugins: list[LoadedPlugin] = field(default_factory=list)
    # which plugin registered each "kind:name", for records and `dpbench plugins`
    origin: dict[str, LoadedPlugin] = field(default_factory=dict)

    def method(self, name: str) -> Method:
        return self._get("method", self.methods, name)

    def pair(self, name: str) -> PairSpec:
        return self._get("pair", self.pairs, name)

    def evaluator(self, name: str) -> Evaluator:
        return self._get("evaluator", self.evaluators, name)

    def scope(self, name: str) -> Scope:
        return self._get("scope", self.scopes, name)

    def backbone(self, name: str) -> BackboneBuilder:
        return self._get("backbone", self.backbones, name)

    @staticmethod
    def _get(kind: str, table: dict, name: str) -> Any:
        if name not in table:
            raise UnknownNameError(kind, name, list(table))
        return table[name]

    def for_plugins(self) -> "Registry":
        """The registry as plugin code gets it (a method's validate, complete_settings and context): a copy of the
        tables, in which every pair is a view without a loader (`pair_view`), so no plugin reaches a pair's private
        splits through it or changes what the harness looks up."""
        tables = {attribute: dict(getattr(self, attribute)) for attribute, _, _ in KINDS.values()}
        tables["pairs"] = {name: pair_view(spec) for name, spec in self.pairs.items()}
        return dataclasses.replace(self, **tables, plugins=list(self.plugins), origin=dict(self.origin))


class PairLoaderWithheld:
    """A pair view's `load`: plugin code gets a pair's description, never its private splits."""

    def __init__(self, pair: str) -> None:
        self.pair = pair

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(f"plugin code cannot load pair '{self.pair}': a method reaches the private training "
                              "split only through ctx.private_trainer(...), its public split as ctx.public, and "
                              "only evaluators see the private test split")


def pair_view(spec: PairSpec) -> PairSpec:
    """`spec` without its loader and downloader (idempotent): what a method sees as `ctx.pair`, in `settings(preset,
    pair)` and in the registry it is handed."""
    if isinstance(spec.load, PairLoaderWithheld):
        return spec
    return dataclasses.replace(spec, load=PairLoaderWithheld(spec.name), download=None)


def check_method_api(method: Method) -> None:
    """Refuse a method written for the 0.1 API with a message that says what changed."""
    legacy = hasattr(method, "configure") or not is_dataclass(getattr(method, "Settings", None))
    if not legacy:
        params = list(inspect.signature(method.train).parameters)
        legacy = len(params) != 2
    if legacy:
        raise PluginAPIError(f"method '{method.name}' was written for the dpbench 0.1 plugin API. {MIGRATION_HINT}")
    if method.produces == "generator" and "samples_per_class" not in {f.name for f in fields(method.Settings)}:
        raise PluginAPIError(f"generator method '{method.name}' needs an int setting `samples_per_class` (how many "
                             "synthetic images per class the harness draws and scores)")


def _collector(registry: Registry, kind: str, plugin: LoadedPlugin):
    attribute, _, _ = KINDS[kind]
    expected = expected_type(kind)
    table = getattr(registry, attribute)

    def register(obj: Any) -> None:
        if not isinstance(obj, expected):
            raise TypeError(f"plugin {plugin.name} registered {obj!r} as a {kind}; expected a {expected.__name__}")
        if not obj.name:
            raise ValueError(f"plugin {plugin.name} registered a {kind} without a name")
        if kind == "method":
            check_method_api(obj)
        if obj.name in table:
            raise ValueError(f"{kind} '{obj.name}' registered twice (by {registry.origin[kind + ':' + obj.name].name} and {plugin.name})")
        table[obj.name] = obj
        registry.origin[f"{kind}:{obj.name}"] = plugin
        plugin.provides.append(f"{kind}:{obj.name}")

    return register


def _register_from(registry: Registry, pm: pluggy.PluginManager, module: Any, plugin: LoadedPlugin) -> None:
    """Run one plugin's hooks. On any error, undo what it registered so a broken plugin leaves no trace."""
    snapshot = {attr: dict(getattr(registry, attr)) for attr, _, _ in KINDS.values()}
    try:
        pm.register(module, name=plugin.name)
        others = [p for p in pm.get_plugins() if p is not module]
        for kind, (_, _, hook_name) in KINDS.items():
            caller = pm.subset_hook_caller(hook_name, remove_plugins=others)
            caller(register=_collector(registry, kind, plugin))
    except Exception as exc:  # a broken plugin is reported and skipped, never fatal
        for attr, table in snapshot.items():
            setattr(registry, attr, table)
        for key in plugin.provides:
            registry.origin.pop(key, None)
        plugin.provides.clear()
        plugin.error = f"{type(exc).__name__}: {exc}"
        if pm.is_registered(module):
            pm.unregister(module)


def pinned_plugins() -> set[str] | None:
    """The entry-point names in $DPBENCH_LOAD_PLUGINS (comma-separated), or None when unset: load them all."""
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def load_registry(extra_modules: list[Any] | None = None) -> Registry:
    """Load every plugin of the entry-point group (or those pinned by $DPBENCH_LOAD_PLUGINS), then
    `extra_modules` (used by tests and embedders)."""
    from dpbench.api import hookspecs

    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    pinned = pinned_plugins()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if pinned is not None and ep.name not in pinned:
            continue
        dist = getattr(ep, "dist", None)
        plugin = LoadedPlugin(
            name=ep.name, module=ep.value,
            distribution=dist.metadata["Name"] if dist else None, version=dist.version if dist else None,
        )
        registry.plugins.append(plugin)
        try:
            module = ep.load()
        except Exception as exc:
            plugin.error = plugin_import_error(exc)
            continue
        _register_from(registry, pm, module, plugin)
    if pinned is not None:
        for name in sorted(pinned - {p.name for p in registry.plugins}):
            registry.plugins.append(LoadedPlugin(name=name, module="?", distribution=None, version=None,
                                                 error=f"named in ${LOAD_PLUGINS_ENV} but no such plugin is installed"))
    for module in extra_modules or []:
        if isinstance(module, str):
            module = importlib.import_module(module)
        plugin = LoadedPlugin(name=getattr(module, "__name__", repr(module)), module=getattr(module, "__name__", "?"),
                              distribution=None, version=None)
        registry.plugins.append(plugin)
        _register_from(registry, pm, module, plugin)
    return registry


def first_pair(registry: Registry) -> Any:
    """The pair `list` and `show` describe settings on (settings can depend on the pair, e.g. sample counts)."""
    return registry.pairs[sorted(registry.pairs)[0]] if registry.pairs else None


def method_sheet(registry: Registry, name: str, pair: Any = None) -> dict:
    """What `dpbench show METHOD` prints: the method, the presets it answers for on `pair` (default: the first
    registered pair; settings can depend on the pair), and each setting's row of `describe` with its default
    per preset."""
    from dpbench.api.settings import describe
    from dpbench.api.types import PRESETS

    method = registry.method(name)
    pair = pair_view(pair if pair is not None else first_pair(registry)) if (pair or registry.pairs) else None
    origin = registry.origin.get(f"method:{name}")
    rows: dict[str, dict] = {}
    presets = []
    for preset in PRESETS:
        try:
            described = describe(method.settings(preset, pair))
        except Exception:  # a preset this method does not have (on this pair)
            continue
        presets.append(preset)
        for row in described:
            entry = rows.setdefault(row["name"], {k: v for k, v in row.items() if k != "default"} | {"defaults": {}})
            entry["defaults"][preset] = row["default"]
    return {"name": method.name, "description": method.description, "produces": method.produces,
            "reference": method.reference, "plugin": origin.name if origin else None,
            "pair": getattr(pair, "name", None), "presets": presets, "settings": list(rows.values())}


def listing(registry: Registry, kind: str, with_settings: bool = False) -> list[dict]:
    """`dpbench list KIND`'s rows: each registered name, its description and plugin, and what its kind adds
    (methods with `with_settings`: each setting's row of `describe` under the default preset, on the first pair)."""
    from dpbench.api.settings import describe

    pair = first_pair(registry)
    rows = []
    for name, obj in sorted(getattr(registry, kind).items()):
        origin = registry.origin.get(f"{kind[:-1]}:{name}")
        row = {"name": name, "description": obj.description, "plugin": origin.name if origin else None}
        if kind == "methods":
            row.update(produces=obj.produces, reference=obj.reference)
            if with_settings:
                row["settings"] = describe(obj.settings("default", pair_view(pair) if pair is not None else None))
        elif kind == "pairs":
            row.update(image_size=obj.image_size, channels=obj.channels, num_classes=obj.num_classes)
        elif kind == "evaluators":
            row.update(applies_to=list(obj.applies_to))
        rows.append(row)
    return rows


def plugin_rows(registry: Registry) -> list[dict]:
    """`dpbench plugins`'s rows: each plugin's distribution, version, status and what it registered."""
    return [{"name": p.name, "module": p.module, "distribution": p.distribution, "version": p.version,
             "status": "error" if p.error else "ok", "error": p.error, "provides": p.provides} for p in registry.plugins]
