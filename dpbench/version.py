"""The plugin API version and what changed since the last one (the ground floor: imports nothing)."""
import re

API_VERSION = "1.0"
MIGRATION_HINT = ("dpbench API 1.0 changed the method contract: `configure(preset, pair) -> dict` became "
                  "`settings(preset, pair)` returning a `Settings` dataclass, `train(ctx, settings)` gets its DP "
                  "engine from `ctx.private_trainer(...)`, and `MethodResult` no longer carries a ledger. "
                  "See docs/plugins.md, 'Migrating from 0.1'.")


# names of the 0.1 plugin API -> what replaced them; a plugin that still imports one is refused with this
API_0_1_NAMES = {"RunContext": "dpbench.MethodContext", "PrivacyLedger": None, "DPConfig": "dpbench.DPSettings",
                 "DPSGDEngine": "ctx.private_trainer(...)", "plan_privacy": "ctx.private_trainer(...)",
                 "interface": "dpbench", "diffusion_method": "dpbench.finetune.method"}
_MISSING_NAME = re.compile(r"cannot import name '(\w+)'|No module named '(?:[\w.]*\.)?(\w+)'")


def plugin_import_error(exc: BaseException) -> str:
    """What `dpbench plugins` says of a plugin that failed to import; for a name of the 0.1 API, what replaced
    it and the migration hint."""
    text = f"{type(exc).__name__}: {exc}"
    match = _MISSING_NAME.search(str(exc)) if isinstance(exc, ImportError) else None
    name = match and (match.group(1) or match.group(2))
    if name in API_0_1_NAMES:
        instead = API_0_1_NAMES[name]
        text += (f". {name} was removed in plugin API {API_VERSION}." + (f" Use {instead} instead." if instead else "")
                 + f" {MIGRATION_HINT}")
    return text
