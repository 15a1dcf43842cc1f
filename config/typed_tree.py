"""Plain trees (JSON-like values) into schema structs, with every wrong field named.

Owns `from_tree(cls, tree, path)`: builds a pystachio struct, list, map, choice or scalar
from dicts, lists, strings and numbers, checking every type on the way, and raises one
`ConfigError` listing each bad field as a dotted path from `path` with its value. The task
document, JSON configs and every flattening of a job go through it, so a job that got past
it is well-typed. Never does I/O, never logs, never reads the environment.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pystachio import Boolean, Integer, String
from pystachio.basic import EnumContainer, SimpleObject
from pystachio.choice import ChoiceContainer
from pystachio.composite import Structural
from pystachio.container import ListContainer, MapContainer

from config.errors import ConfigError, join_problems, show
from config.words import did_you_mean, quoted

_KIND_WORDS = {"HealthCheckerConfig": "health checker kind"}


def from_tree(cls: type, tree: Any, path: str = "job") -> Any:
    """Builds a `cls` (a pystachio type) from plain values, checking every type on the way.

    Strings stand for themselves; numbers must be numbers (a template in a numeric field is
    an error: only strings are expanded later). Raises `ConfigError` naming each bad field
    as a dotted path starting at `path`, with its value.
    """
    problems: list[str] = []
    built = _build(cls, tree, path, problems)
    if problems:
        raise ConfigError(join_problems("invalid " + path, problems), problems)
    return built


def _build(cls: Any, value: Any, path: str, problems: list[str]) -> Any:
    if issubclass(cls, Structural):
        return _build_struct(cls, value, path, problems)
    if issubclass(cls, ListContainer):
        if not isinstance(value, (list, tuple)):
            problems.append(f"{path} must be a list, not {show(value)}")
            return None
        items = [_build(cls.TYPE, v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
        return None if any(v is None for v in items) else cls(items)
    if issubclass(cls, MapContainer):
        if not isinstance(value, Mapping):
            problems.append(f"{path} must be a map, not {show(value)}")
            return None
        pairs = [(_build(cls.KEYTYPE, k, f"{path} key", problems),
                  _build(cls.VALUETYPE, v, f"{path}[{k}]", problems)) for k, v in value.items()]
        return None if any(None in pair for pair in pairs) else cls(*pairs)
    if issubclass(cls, ChoiceContainer):
        return _build_choice(cls, value, path, problems)
    return _build_scalar(cls, value, path, problems)


def _build_struct(cls: Any, value: Any, path: str, problems: list[str]) -> Any:
    if not isinstance(value, Mapping):
        problems.append(f"{path} must be a {cls.__name__} (a map of fields), not {show(value)}")
        return None
    fields = {}
    for key, item in value.items():
        if key not in cls.TYPEMAP:
            word = _KIND_WORDS.get(cls.__name__, "field")
            known = ", ".join(sorted(cls.TYPEMAP)) or "no fields"
            hint = did_you_mean(str(key), cls.TYPEMAP)
            hint = hint if hint.startswith("; did you mean") else ""
            problems.append(f"{path}: unknown {word} {quoted(key)} ({cls.__name__} has {known}){hint}")
        elif item is not None:  # JSON null reads as "not given"
            fields[key] = _build(cls.TYPEMAP[key].klazz, item, f"{path}.{key}", problems)
    for name, sig in sorted(cls.TYPEMAP.items()):
        if sig.required and name not in fields:
            problems.append(f"{path}.{name} is required but missing")
    if any(v is None for v in fields.values()):
        return None
    return cls(**fields)


def _build_choice(cls: Any, value: Any, path: str, problems: list[str]) -> Any:
    for alternative in cls.CHOICES:
        attempt: list[str] = []
        built = _build(alternative, value, path, attempt)
        if not attempt:
            return cls(built)
    names = ", ".join(c.__name__ for c in cls.CHOICES)
    problems.append(f"{path} = {show(value)} is none of {names}")
    return None


def _build_scalar(cls: Any, value: Any, path: str, problems: list[str]) -> Any:
    if not issubclass(cls, SimpleObject):
        problems.append(f"{path}: unsupported schema type {cls.__name__}")
        return None
    problem = _scalar_problem(cls, value)
    if problem:
        problems.append(f"{path} = {show(value)} {problem}")
        return None
    if issubclass(cls, EnumContainer):
        return cls(value)
    return cls(cls.coerce(value))


def _scalar_problem(cls: Any, value: Any) -> str | None:
    if issubclass(cls, EnumContainer):
        if isinstance(value, str) and value in cls.VALUES:
            return None
        return f"is not one of {', '.join(cls.VALUES)}"
    if cls is String:
        return None if isinstance(value, (str, int, float)) and not isinstance(value, bool) \
            else "is not a string"
    if cls is Boolean:
        if isinstance(value, bool) or value in ("true", "false", "True", "False"):
            return None
        return "is not a boolean (true or false)"
    word = "an integer" if cls is Integer else "a number"
    if not isinstance(value, (int, float, str)):  # a bool is an int: True is 1, as in pystachio
        return f"is not {word}"
    if cls is Integer and (isinstance(value, int) or isinstance(value, str) and _int_text(value)):
        return None  # (text of 400 digits too: `float` read it as inf, "not a finite number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return f"is not {word}" + (" (templates are not allowed in numeric fields)"
                                   if isinstance(value, str) and "{{" in value else "")
    if not math.isfinite(number):
        return "is not a finite number"
    if cls is Integer and isinstance(value, str):  # `int('1e5')`, `int('2.0')` fail where `float` reads
        return "is not an integer"  # them: pystachio's bare CoercionError, naming no field
    return None  # a number with a fraction: Integer's `int(5.5)` is 5, as Aurora's client sends it


def _int_text(value: str) -> bool:
    """Whether `value` is text Integer's `int(value)` reads."""
    try:
        int(value)
    except ValueError:
        return False
    return True
