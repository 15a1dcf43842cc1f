"""The settings classes' flags declared on an argparse parser, and their environment
variables as the rows `--help` shows: from the metadata `config/sourced.py`'s `setting`
gives each field. Loaded only when a command is parsed with argparse (its help, a flag not
plain, an inspection or control command): `stoker run` and `stoker executor` given plain
words never load it (`config/quickargs.py`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import attrs

if TYPE_CHECKING:
    import argparse

P = TypeVar("P", "argparse.ArgumentParser", "argparse._ArgumentGroup")


def add_arguments(parser: P, settings_cls: type) -> P:
    """Declares the flags and positionals of `settings_cls` on `parser` (or an argument
    group of one), from its metadata.

    Every option defaults to None so that `from_args` can tell "not given" from a value and
    fall back to the environment, then to the field's default (shown in the help).
    """
    for f in attrs.fields(settings_cls):
        md = f.metadata
        if not md.get("flag"):
            continue
        extra = dict(md["argparse"])
        positional = extra.pop("positional", False)
        names = list(md["env"])
        env = f" [env {', '.join(names)}]" if names else ""
        if positional:
            parser.add_argument(md["flag"], help=md["help"] + env, default=None, **extra)
        else:
            parser.add_argument(md["flag"], *md["aliases"], dest=f.name, help=md["help"] + env,
                                default=None, **extra)
    return parser


def variables(settings_cls: type) -> list[tuple[str, str]]:
    """(variable, meaning) for every environment variable `settings_cls` reads, in field
    order: the table `--help` shows."""
    rows = []
    for f in attrs.fields(settings_cls):
        required = " (required)" if f.default is attrs.NOTHING else ""
        flag = f" (or {f.metadata['flag']})" if f.metadata["flag"] else ""
        for i, name in enumerate(f.metadata["env"]):
            meaning = f"{f.metadata['help']}{flag}{required}" if i == 0 else \
                f"used when {f.metadata['env'][i - 1]} is unset"
            rows.append((name, meaning))
    return rows
