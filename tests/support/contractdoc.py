"""docs/contract.md read as the tests that check it against the code read it: a section's
text, and the keys of a JSON object as the page spells it (`{"a", "b": {...}}`)."""
from __future__ import annotations

import re

from tests.support.configs import REPO

CONTRACT = (REPO / "docs/contract.md").read_text()


def section(number: str) -> str:
    start = CONTRACT.index(f"\n## {number}. ")
    end = CONTRACT.find("\n## ", start + 1)
    return CONTRACT[start:end if end > 0 else None]


def keys(spec: str) -> set[str]:
    """The keys of a JSON object as §1 spells it, `{"a", "b": {...}, "c": "x" or "y"}`: its
    quoted words that follow its `{` or a comma, outside what it nests."""
    inner = spec.strip()[1:-1]
    while re.search(r"\{[^{}]*\}|<[^<>]*>|\([^()]*\)|\[[^\[\]]*\]", inner):
        inner = re.sub(r"\{[^{}]*\}|<[^<>]*>|\([^()]*\)|\[[^\[\]]*\]", "", inner)
    return set(re.findall(r'(?:^|, )"(\w+)"', inner))


def nested(spec: str, opening: str) -> str:
    """The object (or `<...>`) that starts at `opening` in `spec`, brackets balanced."""
    start = spec.index(opening) + len(opening) - 1
    depth = 0
    for end in range(start, len(spec)):
        depth += spec[end] in "{<" and 1 or spec[end] in "}>" and -1 or 0
        if depth == 0:
            return spec[start:end + 1]
    raise AssertionError(f"{opening} is not closed in {spec}")


def object_after(text: str, words: str) -> str:
    """The first `{...}` after `words` in `text`, its blanks made single spaces."""
    text = re.sub(r"\s+", " ", text)
    at = text.index("{", text.index(words))
    return nested(text[at:], "{")
