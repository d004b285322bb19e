"""The plugin API version and what changed since the last one (the ground floor: imports nothing)."""

API_VERSION = "1.0"
MIGRATION_HINT = ("dpbench API 1.0 changed the method contract: `configure(preset, pair) -> dict` became "
                  "`settings(preset, pair)` returning a `Settings` dataclass, `train(ctx, settings)` gets its DP "
                  "engine from `ctx.private_trainer(...)`, and `MethodResult` no longer carries a ledger. "
                  "See docs/plugins.md, 'Migrating from 0.1'.")


class RemovedInAPI1Error(ImportError):
    """A name of the 0.1 plugin API. An ImportError, so `from dpbench import RunContext` keeps this message."""


def removed(module: str, name: str, instead: str | None) -> RemovedInAPI1Error:
    hint = f" Use {instead} instead." if instead else ""
    return RemovedInAPI1Error(f"{module}.{name} was removed in plugin API {API_VERSION}.{hint} {MIGRATION_HINT}")
