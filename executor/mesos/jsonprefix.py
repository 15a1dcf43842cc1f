"""What the first bytes of a JSON object say (pure): string values at given key paths.

A record too large to hold (docs/mesos.md §4) is dropped as it streams past; only its first
bytes are kept, and this module reads them: which event it is (`type`) and, for a LAUNCH,
the task id (`launch.task.task_id.value`), so that the task can still be answered. It walks
JSON tokens (strings, punctuation, bare scalars), keeping the path of object keys that leads
to the current value; arrays are part of the path too, so a key inside one never matches.
The prefix ends anywhere, mid-token included: the walk stops there, with what it found.
No I/O, no state between calls.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable

KeyPath = tuple[str, ...]

_TOKEN = re.compile(rb'\s*(?:("(?:[^"\\]|\\.)*")|([{}\[\]:,])|([^\s{}\[\]:,"]+))')
_IN_ARRAY = "\x00[]"  # the path element of an array's items: no key can equal it


def string_values(prefix: bytes, wanted: Iterable[KeyPath]) -> dict[KeyPath, str]:
    """The string values found in `prefix` at the `wanted` key paths (the first of each)."""
    wanted = set(wanted)
    found: dict[KeyPath, str] = {}
    frames: list[list[str | None]] = []  # per open container: [its current key]; arrays: [_IN_ARRAY]
    pos = 0
    while wanted - found.keys():
        match = _TOKEN.match(prefix, pos)
        if match is None or match.end() == pos:
            break  # the prefix ends here (or mid-token)
        pos = match.end()
        text, punct, scalar = match.groups()
        if punct is not None:
            if punct in (b"{", b"["):
                frames.append([None if punct == b"{" else _IN_ARRAY])
            elif punct in (b"}", b"]"):
                if not frames:
                    break
                frames.pop()
            elif punct == b"," and frames and frames[-1][0] != _IN_ARRAY:
                frames[-1][0] = None  # the next string is a key
            continue
        if text is None:
            continue  # a number, true, false or null: no string value
        try:
            value = json.loads(text)
        except ValueError:
            break
        if frames and frames[-1][0] is None:
            frames[-1][0] = value  # a key
            continue
        path = tuple(str(frame[0]) for frame in frames)
        if path in wanted and path not in found:
            found[path] = value
    return found
