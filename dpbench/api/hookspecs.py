"""The plugin contract. A plugin module implements any of these hooks with `@dpbench.hookimpl`.

Each hook receives a `register` callback and calls it once per object it contributes. Plugins are
discovered through the entry-point group "dpbench"; built-in plugins use the very same route.
"""
from __future__ import annotations

import pluggy

from dpbench.api.types import Register

hookspec = pluggy.HookspecMarker("dpbench")


@hookspec
def dpbench_register_methods(register: Register) -> None:
    """Register DP fine-tuning methods: call `register(method)` with instances of `dpbench.Method`."""


@hookspec
def dpbench_register_pairs(register: Register) -> None:
    """Register public -> private dataset pairs: call `register(pair)` with `dpbench.PairSpec` objects."""


@hookspec
def dpbench_register_evaluators(register: Register) -> None:
    """Register evaluators: call `register(evaluator)` with instances of `dpbench.Evaluator`."""


@hookspec
def dpbench_register_scopes(register: Register) -> None:
    """Register trainable scopes: call `register(scope)` with instances of `dpbench.Scope`."""


@hookspec
def dpbench_register_backbones(register: Register) -> None:
    """Register public backbones: call `register(builder)` with instances of `dpbench.BackboneBuilder`."""


@hookspec
def dpbench_published_results(register: Register) -> None:
    """Register published reference numbers: call `register(result)` with `dpbench.PublishedResult` objects."""
