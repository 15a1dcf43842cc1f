"""How a settings class is read from flags and the environment: the table rows its fields
are, and the precedence between them. `config/settings.py` (`RunSettings`),
`config/executorsettings.py`, `config/registry.py` and `config/logsettings.py` declare
their fields with it.

Owns `setting`, one field and its table row as metadata, twitter.common style: flag,
environment variables, default, help and parser, read by `config/argdecl.py` (argparse,
`--help`), `config/quickargs.py` (plain words) and `Sourced.from_env`; and `Sourced`, the
class methods that read them. Precedence for a field: flag (an override) > environment
variable > default; an empty variable counts as unset. `flag_conflicts` lists the flags
given that overrode a variable set to something else, for the CLI to warn about;
`from_environment` names the variable a setting came from. Every problem is put in terms of
the flag or the variable it came from (`--kill-grace='x' is not ...`), never of these
classes. Never logs, no I/O.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Self

import attrs

from config.errors import SettingsError
from config.words import quoted


def _text(value: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{quoted(value)} is not text")
    return value


def setting(*, help: str, env: tuple[str, ...] = (), flag: str | None = None,
            parse: Callable[[Any], Any] = _text, default: Any = attrs.NOTHING,
            factory: Callable[[], Any] | None = None, repr: bool = True,
            aliases: tuple[str, ...] = (),
            default_from: Callable[[Mapping[str, str]], Any] | None = None,
            **argparse_kw: Any) -> Any:
    """One settings field and its table row (see the module docstring). `aliases`: other
    spellings of the flag (Thermos' own, so its executor flags keep working); `default_from`:
    a default computed from the environment (the field's default is then None)."""
    metadata = {"help": help, "env": env, "flag": flag, "parse": parse, "argparse": argparse_kw,
                "aliases": aliases, "default_from": default_from}
    if default_from is not None:
        default = None
    if factory is not None:
        return attrs.field(factory=factory, metadata=metadata, repr=repr)
    return attrs.field(default=default, metadata=metadata, repr=repr)


def _from_sources(cls: type, environ: Mapping[str, str], overrides: dict[str, Any]) -> Any:
    fields = attrs.fields(cls)
    known = {f.name for f in fields}
    problems = [f"unknown setting {quoted(name)}" for name in sorted(set(overrides) - known)]
    values: dict[str, Any] = {}
    for f in fields:
        source, raw = _pick(f, environ, overrides)
        if raw is None and f.metadata["default_from"] is not None:
            source, raw = f.name, f.metadata["default_from"](environ)
        if raw is None:
            if f.default is attrs.NOTHING:
                where = " or ".join(f.metadata["env"]) or f.metadata["flag"] or f.name
                problems.append(f"{where} is not set ({f.metadata['help']})")
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except (ValueError, TypeError) as exc:
            problems.append(f"{source}={exc}")
    if problems:
        raise SettingsError("; ".join(problems), problems)
    return cls(**values)


def _pick(f: attrs.Attribute, environ: Mapping[str, str], overrides: dict[str, Any]) -> tuple[str, Any]:
    if overrides.get(f.name) is not None:
        return f.metadata["flag"] or f.name, overrides[f.name]
    return _from_environ(f, environ)


def _from_environ(f: attrs.Attribute, environ: Mapping[str, str]) -> tuple[str, Any]:
    for name in f.metadata["env"]:
        if environ.get(name):
            return name, environ[name]
    return "", None


def from_environment(cls: type, name: str, environ: Mapping[str, str]) -> tuple[str, str | None]:
    """(VARIABLE, value) of the variable that gives `cls`'s setting `name` its value, as
    `from_env` picks it; ("", None) when none does (or `cls` has no such setting)."""
    field = attrs.fields_dict(cls).get(name)
    return _from_environ(field, environ) if field is not None else ("", None)


def flag_conflicts(cls: type, args: object, environ: Mapping[str, str]) -> list[str]:
    """One sentence per flag given that won over a variable set to another value:
    `--sandbox /a wins over MESOS_SANDBOX=/b`."""
    given = _namespace_values(cls, args)
    conflicts = []
    for f in attrs.fields(cls):
        value = given.get(f.name)
        name, raw = _from_environ(f, environ)
        if value is None or raw is None or not f.metadata["flag"] or str(value) == raw:
            continue
        conflicts.append(f"{f.metadata['flag']} {value} wins over {name}={raw}")
    return conflicts


class Sourced:
    """`from_env` and `from_args` of a settings class whose fields are `setting`s: the
    precedence above, and every problem put in terms of a flag or a variable."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Self:
        """Settings from `environ`; `overrides` (flags; None = not given) win. Raises
        SettingsError."""
        return _from_sources(cls, environ, overrides)

    @classmethod
    def from_args(cls, args: object, environ: Mapping[str, str]) -> Self:
        """Settings from a parsed command line (argparse's namespace or quickargs') and
        `environ`. Raises SettingsError."""
        return cls.from_env(environ, **_namespace_values(cls, args))


def _namespace_values(cls: type, args: object) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in attrs.fields(cls) if hasattr(args, f.name)}
