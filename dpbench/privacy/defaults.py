"""The engine's defaults and choices that settings declare (no torch, no Opacus: a plugin module that declares
its settings imports this and stays fast to load)."""

ACCOUNTANTS = ("rdp", "prv")
DEFAULT_ACCOUNTANT = "rdp"  # fast (<0.15 s); PRV is tighter (sigma 3-7% lower) but takes up to 14 s
DEFAULT_PHYSICAL_BATCH = 64  # examples per chunk of the per-example gradient computation: bounds memory, not privacy
