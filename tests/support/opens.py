"""The files a piece of code opens (`open`, `os.open`, in this thread or another), counted
with an audit hook: what a test of a cache asserts is read once, or not again."""
from __future__ import annotations

import collections
import contextlib
import os
import sys
from collections.abc import Callable, Iterator

_counting: list[tuple[collections.Counter[str], Callable[[str], str]]] = []


def _audit(event: str, args: tuple) -> None:
    if _counting and event == "open" and isinstance(args[0], str):
        counter, key = _counting[-1]
        counter[key(args[0])] += 1


sys.addaudithook(_audit)  # for the whole session (a hook cannot be removed): it counts only inside `opens`


@contextlib.contextmanager
def opens(key: Callable[[str], str] = os.path.basename) -> Iterator[collections.Counter[str]]:
    """The names opened while inside, counted by `key` of their paths (their base names)."""
    _counting.append((collections.Counter(), key))
    try:
        yield _counting[-1][0]
    finally:
        _counting.pop()
