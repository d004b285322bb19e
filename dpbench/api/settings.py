"""Typed method settings: a dataclass per method, parsed and checked by type.

A method declares its settings as a dataclass whose fields use `setting(...)`, which carries the help text and
the constraints. `--set KEY=VALUE` parses VALUE by the field's type; an ill-typed or unknown value is a
`SettingError` that names the key, the expected type and the valid keys.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any

_INT = re.compile(r"[+-]?\d+")
_NULL = ("null", "none")


class SettingError(ValueError):
    """A bad setting: unknown key, wrong type or out of range. The CLI exits 2 with this message."""


def setting(default: Any, help: str, *, choices: tuple | None = None, minimum: float | None = None,
            above: float | None = None, below: float | None = None) -> Any:
    """A settings field: its default, one line of help, and optional constraints (checked by `check`).

    minimum: value >= minimum; above: value > above; below: value < below; choices: one of them.
    """
    meta = {"help": help, "choices": choices, "minimum": minimum, "above": above, "below": below}
    return dataclasses.field(default=default, metadata=meta)


def fields_of(settings_type: type) -> dict[str, tuple[Any, dataclasses.Field]]:
    """{name: (resolved type, field)} of a settings dataclass."""
    if not dataclasses.is_dataclass(settings_type):
        raise TypeError(f"{settings_type!r} is not a settings dataclass")
    hints = typing.get_type_hints(settings_type)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(settings_type)}


def _optional_inner(tp: Any) -> tuple[Any, bool]:
    """(X, True) for X | None, else (tp, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def type_name(tp: Any) -> str:
    inner, optional = _optional_inner(tp)
    name = getattr(inner, "__name__", str(inner))
    return f"{name} or null" if optional else name


def _parse(tp: Any, raw: str) -> Any:
    inner, optional = _optional_inner(tp)
    text = raw.strip()
    if optional and text.lower() in _NULL:
        return None
    if inner is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError
    if inner is int:
        if not _INT.fullmatch(text):
            raise ValueError
        return int(text)
    if inner is float:
        value = float(text)
        if math.isnan(value):
            raise ValueError
        return value
    if inner is str:
        return text
    raise TypeError(f"settings of type {type_name(tp)} cannot be set from text")


def _conforms(tp: Any, value: Any) -> bool:
    inner, optional = _optional_inner(tp)
    if value is None:
        return optional
    if inner is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if inner is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, inner)


def _error(settings_type: type, key: str, problem: str) -> SettingError:
    valid = ", ".join(sorted(fields_of(settings_type)))
    return SettingError(f"setting '{key}': {problem}. Valid keys: {valid}")


def apply_overrides(settings: Any, overrides: dict[str, Any]) -> Any:
    """A copy of `settings` with `overrides` applied; text values are parsed by each field's type."""
    table = fields_of(type(settings))
    changes = {}
    for key, raw in overrides.items():
        if key not in table:
            raise _error(type(settings), key, "unknown key")
        tp, _ = table[key]
        if isinstance(raw, str) and _optional_inner(tp)[0] is not str:
            try:
                value = _parse(tp, raw)
            except ValueError:
                raise _error(type(settings), key, f"expected {type_name(tp)}, got '{raw}'") from None
        else:
            value = raw
        if not _conforms(tp, value):
            raise _error(type(settings), key, f"expected {type_name(tp)}, got {value!r}")
        if _optional_inner(tp)[0] is float and isinstance(value, int):
            value = float(value)
        changes[key] = value
    updated = dataclasses.replace(settings, **changes)
    check(updated)
    return updated


def check(settings: Any) -> None:
    """Raise SettingError for a value outside its field's constraints (types included)."""
    for key, (tp, f) in fields_of(type(settings)).items():
        value = getattr(settings, key)
        if not _conforms(tp, value):
            raise _error(type(settings), key, f"expected {type_name(tp)}, got {value!r}")
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise _error(type(settings), key, f"must be finite, got {value!r}")
        meta = f.metadata
        if meta.get("choices") is not None and value not in meta["choices"]:
            raise _error(type(settings), key, f"expected one of {list(meta['choices'])}, got {value!r}")
        if meta.get("minimum") is not None and not value >= meta["minimum"]:
            raise _error(type(settings), key, f"must be >= {meta['minimum']}, got {value!r}")
        if meta.get("above") is not None and not value > meta["above"]:
            raise _error(type(settings), key, f"must be > {meta['above']}, got {value!r}")
        if meta.get("below") is not None and not value < meta["below"]:
            raise _error(type(settings), key, f"must be < {meta['below']}, got {value!r}")


def describe(settings: Any) -> list[dict]:
    """Each setting's name, type, value in `settings` (the preset's default), help and constraints."""
    rows = []
    for key, (tp, f) in fields_of(type(settings)).items():
        meta = {k: v for k, v in f.metadata.items() if k != "help" and v is not None}
        if "choices" in meta:
            meta["choices"] = list(meta["choices"])
        rows.append({"name": key, "type": type_name(tp), "default": getattr(settings, key),
                     "help": f.metadata.get("help", ""), **meta})
    return rows


def as_dict(settings: Any) -> dict:
    return dataclasses.asdict(settings)
