"""Reading a checkpoint record's fields without trusting them (`records.py`). PURE.

Each reader takes the record's JSON object and a key, and returns the value, the default
when the field is absent or null (when it has one), or raises `Damaged` with a sentence
naming the field: a wrong type, a missing required field, an unknown state name, a number
that is not finite or outside its range. The ranges are what a writer could have written
(`records.py` lists them); anything else would break whoever shows it.
"""
from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any

from config.words import a_kind, quoted

REQUIRED: Any = object()

Range = tuple[float, float]
WALL_SECS: Range = (0, 253402300799)
PIDS: Range = (1, 4194304)
EXIT_CODES: Range = (0, 255)
SIGNALS: Range = (1, 64)
RUNS: Range = (0, 2**31 - 1)
PORTS: Range = (1, 65535)
COUNTS: Range = (0, 2**63 - 1)
UIDS: Range = (0, 2**32 - 2)  # (uid_t)-1 is no user
LATENCY_SECS: Range = (0, 1e9)
DELAY_SECS: Range = WALL_SECS  # a back-off has no bound of its own: the writer caps it at this


class Damaged(Exception):
    """A field has the wrong type, is missing or is out of range; the record is skipped.
    The message says which and why."""


def field(doc: Mapping[str, Any], key: str, default: Any = REQUIRED) -> Any:
    value = doc.get(key)
    if value is None:
        if default is REQUIRED:
            raise Damaged(f"'{key}' is missing")
        return default
    return value


def text(doc: Mapping[str, Any], key: str, default: Any = REQUIRED) -> Any:
    """The text at `key`; empty text is absent when the field has a default."""
    value = field(doc, key, default)
    if value is default:
        return value
    if not isinstance(value, str):
        raise Damaged(f"'{key}' is {a_kind(value)}, not text")
    return default if value == "" and default is not REQUIRED else value


def number(doc: Mapping[str, Any], key: str, default: Any = REQUIRED,
            within: Range = WALL_SECS) -> Any:
    value = field(doc, key, default)
    if value is default:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Damaged(f"'{key}' is {a_kind(value)}, not a number")
    low, high = within
    if not (finite(value) and low <= value <= high):
        raise Damaged(f"'{key}' is {shown(value)}, outside {shown(low)} ... {shown(high)}")
    return float(value)


def finite(value: float) -> bool:
    """Not NaN, not infinite, and (an int) within what a float holds: JSON's integers have
    any number of digits, and math.isfinite() of one past 1.8e308 raises OverflowError."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def integer(doc: Mapping[str, Any], key: str, default: Any = REQUIRED, within: Range = COUNTS) -> Any:
    value = number(doc, key, default, within)
    if value is default:
        return value
    if not value.is_integer():
        raise Damaged(f"'{key}' is {shown(value)}, not a whole number")
    return int(value)


def shown(value: float) -> str:
    text = repr(value)
    if len(text) <= 24:
        return text
    return f"{value:.3g}" if finite(value) else f"{text[:12]}... ({len(text)} digits)"


def state(cls: type[enum.Enum], doc: Mapping[str, Any], key: str,
           default: Any = REQUIRED) -> Any:
    value = text(doc, key, default)
    if value is default:
        return default
    try:
        return cls(value)
    except ValueError:
        raise Damaged(f"'{key}' is {quoted(value[:40])}, not a {cls.__name__} name") from None


def from_state(cls: type[enum.Enum], doc: Mapping[str, Any]) -> Any:
    """A change's "from": None when absent, or when it names no state this Stoker knows (a
    newer Stoker's): where the change went, its "to", is what a reader needs; a task's
    terminal record is read, not skipped, so its end is not taken for a lost task."""
    try:
        return cls(text(doc, "from", None))  # None (absent) is no state either
    except ValueError:
        return None


def stamp(boot: float | None) -> dict[str, float]:
    return {} if boot is None else {"boot": boot}


def boot(doc: Mapping[str, Any]) -> float | None:
    """A record's boot-clock stamp; one that is not a number in range is dropped, not the
    record: the reader then counts from its wall time, as for an older record."""
    try:
        stamp: float | None = number(doc, "boot")
    except Damaged:  # absent too
        stamp = None
    return stamp


def uid(doc: Mapping[str, Any], key: str) -> int | None:
    """An optional user id; one that is not a whole number in range is dropped, not the
    record: the reader then does without it, as for an older record."""
    try:
        found: int | None = integer(doc, key, None, UIDS)
    except Damaged:
        found = None
    return found


def record_json(kind: str, fields: dict[str, Any], wall: float | None) -> dict[str, Any]:
    doc = {"kind": kind, **fields}
    if wall is not None:
        doc["wall"] = wall
    return doc


def value(state: enum.Enum | None) -> Any:
    return None if state is None else state.value
