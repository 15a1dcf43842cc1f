"""`stoker run` and `stoker executor` read without argparse when their words are plain.

The supervisor of `stoker run` lives as long as its task, and everything it imported at
start stays in its memory: argparse, with the `gettext` it loads to translate its texts and
the parser's objects, was 0.24-0.33 MiB of a supervisor's USS and 3 to 4 ms of its start
(docs/benchmarks.md), for words it reads once. `parse` reads the words of a supervising
command from the same metadata `add_arguments` gives argparse (`config/argdecl.py`; each
field's flag, aliases, action, choices and positional rank), and gives up (None) on anything
that is not plain: an unknown word or an abbreviation, `-h`/`--help`, `--`, a value that
starts with `-`, a choice not offered, a flag without its value, a repeated group of
positionals, a form of argument it does not know. The caller then parses with argparse,
which says what is wrong or prints the help, exactly as before; so for any words, the result
is argparse's or it is argparse that answers (`tests/unit/test_quickargs.py` compares the
two on a table).

Pure: words in, the namespace out.
"""
from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import attrs

__all__ = ["parse"]

_PLAIN = {"positional", "nargs", "metavar", "action", "choices"}  # argparse keywords read here
_ACTIONS = ("store", "append", "store_true")


def parse(words: Sequence[str], classes: Sequence[type]) -> SimpleNamespace | None:
    """The namespace argparse's parser for `words[0]` (a command whose arguments are the
    flags of `classes`, as `add_arguments` declares them) gives for `words`; None when the
    words are not plain (see the module docstring)."""
    table = _table(classes)
    if table is None or not words:
        return None
    options, positionals, values = table
    values["command"] = words[0]
    given: list[str] = []
    groups = 0  # runs of positionals in a row: argparse fills its positionals from the first
    in_group = False
    i, n = 1, len(words)
    while i < n:
        word = words[i]
        if not word.startswith("-"):
            groups += not in_group
            in_group = True
            given.append(word)
            i += 1
            continue
        in_group = False
        spec = options.get(word.partition("=")[0])
        i = -1 if spec is None else _option(words, i, spec, values)
        if i < 0:
            return None
    if groups > 1 or not _place(given, positionals, values):
        return None
    return SimpleNamespace(**values)


def _option(words: Sequence[str], i: int, spec: tuple[str, str, Any], values: dict[str, Any]) -> int:
    """Read the option `words[i]` (its `spec`: dest, action, choices) into `values`; the
    index of the word after it, or -1 when it is not plain."""
    _, eq, value = words[i].partition("=")
    dest, action, choices = spec
    if action == "store_true":
        if eq:
            return -1
        values[dest] = True
        return i + 1
    if not eq:
        if i + 1 >= len(words) or words[i + 1].startswith("-"):
            return -1
        value = words[i + 1]
    if choices is not None and value not in choices:
        return -1
    values[dest] = [*(values[dest] or []), value] if action == "append" else value
    return i + 1 if eq else i + 2


def _place(given: list[str], positionals: list[tuple[str, Any]], values: dict[str, Any]) -> bool:
    """Fill the positionals in order (the required ones first, then the optional ones);
    False when the words given do not fit them."""
    required = [dest for dest, nargs in positionals if nargs is None]
    if [nargs for _, nargs in positionals] != [None] * len(required) + ["?"] * (len(positionals) - len(required)):
        return False
    if not len(required) <= len(given) <= len(positionals):
        return False
    for (dest, _), word in zip(positionals, given):
        values[dest] = word
    return True


def _table(classes: Sequence[type]) -> tuple[dict[str, tuple[str, str, Any]], list[tuple[str, Any]],
                                              dict[str, Any]] | None:
    """(option word → (dest, action, choices), [(positional, nargs)], every dest → None), or
    None when a flag uses a form of argument `parse` does not read."""
    options: dict[str, tuple[str, str, Any]] = {}
    positionals: list[tuple[str, Any]] = []
    values: dict[str, Any] = {}
    for cls in classes:
        for field in attrs.fields(cls):
            md = field.metadata
            if not md.get("flag"):
                continue
            extra = md["argparse"]
            action = extra.get("action", "store")
            if set(extra) - _PLAIN or action not in _ACTIONS:
                return None
            if extra.get("positional"):
                if action != "store" or extra.get("choices") is not None:
                    return None
                positionals.append((md["flag"], extra.get("nargs")))
                values[md["flag"]] = None
                continue
            if extra.get("nargs") is not None or not md["flag"].startswith("--"):
                return None
            for name in (md["flag"], *md["aliases"]):
                options[name] = (field.name, action, extra.get("choices"))
            values[field.name] = None
    return options, positionals, values
