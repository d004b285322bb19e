"""Typed method settings: a dataclass per method, parsed and checked by type.

A method declares its settings as a dataclass whose fields use `setting(...)`, which carries the help text and
the constraints. `--set KEY=VALUE` parses VALUE by the field's type; an ill-typed or unknown value is a
`SettingError` that names the key, the expected type and the valid keys.
"""
from __future__ import annotations

import dataclasses
import difflib
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


def nested(help: str, prefix: str) -> Any:
    """A field that holds another settings dataclass (or None), set as `--set PREFIX.KEY=VALUE`: e.g. a method's
    `scope_settings`, whose type is the chosen scope's own `Settings`."""
    return dataclasses.field(default=None, metadata={"help": help, "nested": prefix})


def nested_fields(settings_type: type) -> dict[str, str]:
    """{prefix: field name} of the nested settings fields of a settings dataclass."""
    return {f.metadata["nested"]: f.name for f in dataclasses.fields(settings_type) if f.metadata.get("nested")}


def accepts_key(settings_type: type, key: str) -> bool:
    """Whether `--set key=...` can address these settings (a nested key is checked against the nested type later)."""
    prefix, dot, _ = key.partition(".")
    return prefix in nested_fields(settings_type) if dot else key in fields_of(settings_type)


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


def valid_keys(settings: Any) -> list[str]:
    """Every key `--set` accepts for these settings: flat ones, and PREFIX.KEY for each nested settings value."""
    keys = [k for k, (_, f) in fields_of(type(settings)).items() if not f.metadata.get("nested")]
    for prefix, name in nested_fields(type(settings)).items():
        inner = getattr(settings, name)
        keys += [f"{prefix}.{k}" for k in valid_keys(inner)] if dataclasses.is_dataclass(inner) else []
    return sorted(keys)


def _suggestion(key: str, keys: list[str]) -> str:
    """ "; did you mean 'scope.rank'?" for a key close to a valid one (dotted keys also match by their last part)."""
    by_name = {k: k for k in keys} | {k.rsplit(".", 1)[-1]: k for k in keys if "." in k}
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(by_name), n=1, cutoff=0.6) \
        or difflib.get_close_matches(key, list(by_name), n=1, cutoff=0.6)
    return f"; did you mean '{by_name[close[0]]}'?" if close else ""


def _error(settings: Any, key: str, problem: str, prefix: str = "") -> SettingError:
    keys = [prefix + k for k in valid_keys(settings)]
    hint = _suggestion(prefix + key, keys) if problem == "unknown key" else ""
    return SettingError(f"setting '{prefix}{key}': {problem}{hint}. Valid keys: {', '.join(keys)}")


def apply_overrides(settings: Any, overrides: dict[str, Any], prefix: str = "") -> Any:
    """A copy of `settings` with `overrides` applied; text values are parsed by each field's type. A key
    PREFIX.KEY goes to the nested settings field of that prefix (which must hold a settings dataclass)."""
    table = fields_of(type(settings))
    nested_of = nested_fields(type(settings))
    changes, inner = {}, {}
    for key, raw in overrides.items():
        head, dot, rest = key.partition(".")
        if dot and head in nested_of and dataclasses.is_dataclass(getattr(settings, nested_of[head])):
            inner.setdefault(head, {})[rest] = raw
            continue
        if key not in table or table[key][1].metadata.get("nested"):
            raise _error(settings, key, "unknown key", prefix)
        tp, _ = table[key]
        if isinstance(raw, str) and _optional_inner(tp)[0] is not str:
            try:
                value = _parse(tp, raw)
            except ValueError:
                raise _error(settings, key, f"expected {type_name(tp)}, got '{raw}'", prefix) from None
        else:
            value = raw
        if not _conforms(tp, value):
            raise _error(settings, key, f"expected {type_name(tp)}, got {value!r}", prefix)
        if _optional_inner(tp)[0] is float and isinstance(value, int):
            value = float(value)
        changes[key] = value
    for head, values in inner.items():
        changes[nested_of[head]] = apply_overrides(getattr(settings, nested_of[head]), values, f"{prefix}{head}.")
    updated = dataclasses.replace(settings, **changes)
    check(updated, prefix)
    return updated


def check(settings: Any, prefix: str = "") -> None:
    """Raise SettingError for a value outside its field's constraints (types included); nested settings too."""
    for key, (tp, f) in fields_of(type(settings)).items():
        value = getattr(settings, key)
        if f.metadata.get("nested"):
            if value is not None and not dataclasses.is_dataclass(value):
                raise _error(settings, key, f"expected a settings dataclass or None, got {value!r}", prefix)
            if value is not None:
                check(value, f"{prefix}{f.metadata['nested']}.")
            continue
        if not _conforms(tp, value):
            raise _error(settings, key, f"expected {type_name(tp)}, got {value!r}", prefix)
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise _error(settings, key, f"must be finite, got {value!r}", prefix)
        meta = f.metadata
        if meta.get("choices") is not None and value not in meta["choices"]:
            raise _error(settings, key, f"expected one of {list(meta['choices'])}, got {value!r}", prefix)
        if meta.get("minimum") is not None and not value >= meta["minimum"]:
            raise _error(settings, key, f"must be >= {meta['minimum']}, got {value!r}", prefix)
        if meta.get("above") is not None and not value > meta["above"]:
            raise _error(settings, key, f"must be > {meta['above']}, got {value!r}", prefix)
        if meta.get("below") is not None and not value < meta["below"]:
            raise _error(settings, key, f"must be < {meta['below']}, got {value!r}", prefix)


def describe(settings: Any, prefix: str = "") -> list[dict]:
    """Each setting's name, type, value in `settings` (the preset's default), help and constraints; a nested
    settings value's rows follow, named PREFIX.KEY."""
    rows = []
    for key, (tp, f) in fields_of(type(settings)).items():
        if f.metadata.get("nested"):
            inner = getattr(settings, key)
            rows += describe(inner, f"{prefix}{f.metadata['nested']}.") if dataclasses.is_dataclass(inner) else []
            continue
        meta = {k: v for k, v in f.metadata.items() if k != "help" and v is not None}
        if "choices" in meta:
            meta["choices"] = list(meta["choices"])
        rows.append({"name": prefix + key, "type": type_name(tp), "default": getattr(settings, key),
                     "help": f.metadata.get("help", ""), **meta})
    return rows


def as_dict(settings: Any) -> dict:
    return dataclasses.asdict(settings)
