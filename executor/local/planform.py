"""A plan in plain values (`encode`), and built again from them (`decode`): what the plan
cache keeps (`executor/local/plancache.py`) and what a planning child sends its parent
(`executor/local/planning.py`). `marshal` writes and reads the plain form: reading it runs
no code and builds only the plan's own classes.

A module of its own so that a first run's planning child, which only encodes, loads none
of the plan cache's (`logging`, the run's settings): the entry point forks that child once
the modules both processes use are loaded (`executor/cli/launchfirst.py`), and what only the
supervisor uses loads after the fork, beside the child's planning instead of before it.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from config.plan import JobPlan
from config.spec import (
    CheckKind,
    HealthSpec,
    JobSpec,
    LifecycleSpec,
    LogDestination,
    LoggerSpec,
    LogMode,
    ProcessSpec,
    TaskSpec,
)
from config.words import quoted

__all__ = ["decode", "encode"]

_CLASSES: dict[str, type] = {c.__name__: c for c in (
    JobPlan, JobSpec, TaskSpec, ProcessSpec, LoggerSpec, HealthSpec, LifecycleSpec,
    CheckKind, LogDestination, LogMode)}
_ANNOUNCER = "AnnouncerSpec"  # `config.announcer`'s: loaded for a plan that announces, not before every first report


def _plan_class(name: str) -> Any:
    """The plan's class of this name (KeyError: none), `config.announcer`'s loaded at its first use."""
    if name == _ANNOUNCER and name not in _CLASSES:
        from config.announcer import AnnouncerSpec

        _CLASSES[name] = AnnouncerSpec
    return _CLASSES[name]


def encode(value: Any) -> Any:
    """A plan (or any value it holds) as plain values `marshal` can write."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, enum.Enum):
        return ("e", type(value).__name__, value.value)
    if isinstance(value, tuple):
        return ("t", [encode(v) for v in value])
    if isinstance(value, list):
        return ("l", [encode(v) for v in value])
    if isinstance(value, Mapping):
        return ("d", [(encode(k), encode(v)) for k, v in value.items()])
    name = type(value).__name__
    cls: Any = _plan_class(name) if name in _CLASSES or name == _ANNOUNCER else None
    if cls is not type(value):
        raise ValueError(f"a plan cannot hold a {name}")
    return ("a", name, {f.alias: encode(getattr(value, f.name)) for f in attrs.fields(cls) if f.init})


def decode(value: Any) -> Any:
    """What `encode` gave, built again; raises (KeyError, ValueError, ...) on anything else."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    tag = value[0]
    if tag == "t":
        return tuple(decode(v) for v in value[1])
    if tag == "l":
        return [decode(v) for v in value[1]]
    if tag == "d":
        return {decode(k): decode(v) for k, v in value[1]}
    cls = _plan_class(value[1])
    if tag == "e" and issubclass(cls, enum.Enum):
        return cls(value[2])
    if tag == "a" and attrs.has(cls):
        return cls(**{k: decode(v) for k, v in value[2].items()})
    raise ValueError(f"unknown entry {quoted(tag)}")
