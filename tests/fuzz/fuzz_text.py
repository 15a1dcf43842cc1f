"""Text as Stoker reads and prints it: a config file's bytes that are not UTF-8, named by
line and column (config/explain.py `unread`), and `printable` (config/words.py), which every
printer passes text from outside through (a health endpoint's body, a process's output, a
planted checkpoint), with `columns` and `pad` for table cells.

The bytes are read as `stoker run` reads a config (UTF-8; an error names where it stops)
and as Stoker holds a name from the system (surrogateescape). Contract: the error message
is one line; `printable` leaves no C0 or C1 control and no surrogate, encodes as UTF-8, and
keeps text without them as it is; `printable_lines` keeps exactly the line breaks; `pad`
reaches the width `columns` counts.
"""
from __future__ import annotations

import re

from tests.fuzz.harness import Finding, main

INSTRUMENT = ("config",)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def load() -> None:
    global words, unread
    from config import words
    from config.explain import unread


def seeds() -> list[bytes]:
    return ["cmd = 'echo café 作业'\r\n".encode(), b"a = '\xe9'\nb = 'caf\xe9'\n", b"\xef\xbb\xbfjobs = []\n",
            b"\x1b[31mred\x1b[0m \x9b2J tab\there\r\n\xff\xfe", "e\u0301 \u200b".encode()]


def _printed(text: str) -> None:
    shown = words.printable(text)
    if _UNSAFE.search(shown):
        raise Finding(f"printable({text!r}) = {shown!r}")
    shown.encode("utf-8")
    if not _UNSAFE.search(text) and shown != text:
        raise Finding(f"printable changed {text!r} to {shown!r}")
    lines = words.printable_lines(text)
    if lines.count("\n") != text.count("\n"):
        raise Finding(f"printable_lines({text!r}) = {lines!r}")
    if words.columns(words.pad(shown, 80)) != max(80, words.columns(shown)):
        raise Finding(f"pad({shown!r}, 80) is {words.columns(words.pad(shown, 80))} columns")


def target(data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = unread(exc)
        if not reason or "\n" in reason:
            raise Finding(f"the reason for {data!r} is {reason!r}") from exc
    _printed(data.decode("utf-8", "surrogateescape"))


main(__name__)
