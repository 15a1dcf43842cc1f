"""Prometheus' text exposition format, version 0.0.4: families of samples out as text. PURE.

`render(families)` writes each `Family` as one `# HELP` line, one `# TYPE` line and its
samples, one a line, families in the order given and each family's samples together (the
format wants them contiguous). A label value may hold anything a task id or a process name
holds: a backslash, a double quote and a line feed are escaped (`\\\\`, `\\"`, `\\n`), the
only escapes the format has; a lone surrogate (a name decoded with surrogateescape) becomes
U+FFFD, so the text is always UTF-8. A HELP text escapes the backslash and the line feed. A
sample with the same labels as an earlier one of its family is left out (two names that
became the same after that replacement): the format allows no duplicate series. Values are
Go's floats: integers as such, `+Inf`, `-Inf`, `NaN`. No timestamps: each sample is of the
moment of the scrape.

Names and label names are the caller's (constants, `metrics`): `NAME` and `LABEL_NAME` are
the format's rules for them, which its tests check.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import attrs

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
COUNTER, GAUGE = "counter", "gauge"

Labels = tuple[tuple[str, str], ...]
_LABEL_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
_HELP_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n"})


@attrs.frozen(slots=True)
class Family:
    """One metric: its name, type (COUNTER or GAUGE), help text and samples."""

    name: str
    kind: str
    help: str
    samples: Sequence[tuple[Labels, float]]


def utf8(text: str) -> str:
    """`text` with each lone surrogate as U+FFFD (a pair stays the character it makes)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def label_value(text: str) -> str:
    """A label value as it is written between the double quotes."""
    return utf8(text).translate(_LABEL_ESCAPES)


def value(number: float) -> str:
    if isinstance(number, bool):
        return "1" if number else "0"
    if isinstance(number, int):
        return str(number)
    written = repr(float(number))
    return _GO_FLOATS.get(written, written)


_GO_FLOATS = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}  # Python's repr of each: Go's


def _labels(labels: Labels, pairs: dict[tuple[str, str], str]) -> str:
    """`{k="v",...}`; `pairs`: each pair as written, kept across the answer (a task's labels
    are on each of its series: escaped once)."""
    if not labels:
        return ""
    out = []
    for pair in labels:
        written = pairs.get(pair)
        if written is None:
            written = pairs[pair] = f'{pair[0]}="{label_value(pair[1])}"'
        out.append(written)
    return "{" + ",".join(out) + "}"


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    pairs: dict[tuple[str, str], str] = {}
    for family in families:
        if not family.samples:
            continue
        lines.append(f"# HELP {family.name} {family.help.translate(_HELP_ESCAPES)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        seen: set[str] = set()
        for labels, number in family.samples:
            written = _labels(labels, pairs)
            if written not in seen:
                seen.add(written)
                lines.append(f"{family.name}{written} {value(number)}")
    return "\n".join(lines) + "\n" if lines else ""
