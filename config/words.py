"""Numbers and counts in words, for the reasons the pure machines write. PURE.

Owns the two helpers every reason sentence uses: `plural(3, "attempt")` → "3 attempts"
and `number(5.0)` → "5". No I/O, no clock, no logging; config is the bottom layer, so the
health policy and the executor's planner can both import it.
"""
from __future__ import annotations


def plural(count: int, word: str, many: str | None = None) -> str:
    """"1 process", "2 processes", "3 attempts"; `many` for an irregular plural."""
    if count == 1:
        return f"{count} {word}"
    if many is None:
        many = word + "es" if word.endswith("s") else word + "s"
    return f"{count} {many}"


def number(x: float) -> str:
    """A number as a reason shows it: rounded to 3 places, without a trailing ".0"
    (5.0 → "5", 0.25 → "0.25", 1.23456 → "1.235")."""
    r = round(x, 3)
    return str(int(r)) if r == int(r) else repr(r)
