"""Prometheus' text exposition format, version 0.0.4: families of samples out as text. PURE.

`render(families)` writes each `Family` as one `# HELP` line, one `# TYPE` line and its
samples, one a line, families in the order given and each family's samples together (the
format wants them contiguous), each with its labels as its maker wrote them (`LabelText`:
`Family.written`, a set once for all the samples that carry it), else as written here. A
label value may hold anything a task id or a process name holds: a backslash, a double quote
and a line feed are escaped (`\\\\`, `\\"`, `\\n`), the only escapes the format has; a lone
surrogate (a name decoded with surrogateescape) becomes U+FFFD, so the text is always UTF-8.
A HELP text escapes the backslash and the line feed. A sample with the same labels as an
earlier one of its family is left out (two names that became the same after that
replacement): the format allows no duplicate series. Values are Go's floats: integers as
such, `+Inf`, `-Inf`, `NaN`. No timestamps: each sample is of the moment of the scrape.

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
    written: Sequence[str] = ()  # each sample's labels as `LabelText` writes them, by their maker; () for `render` to


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


class LabelText:
    """Label sets as an answer writes them (`k="v",...`, between the braces), each pair escaped
    once an answer. A maker that writes a set once for all the samples that carry it (a task's
    identity is on each of its ~150 samples, a process's on each of its) and a set of more pairs
    as that one's text and theirs (`more`) hands `render` the text of each sample
    (`Family.written`): a scrape of 100 tasks of 10 processes wrote 15,000 sets pair by pair."""

    def __init__(self) -> None:
        self._pairs: dict[tuple[str, str], str] = {}

    def pair(self, pair: tuple[str, str]) -> str:
        written = self._pairs.get(pair)
        if written is None:
            written = self._pairs[pair] = f'{pair[0]}="{label_value(pair[1])}"'
        return written

    def of(self, labels: Labels) -> str:
        return ",".join([self.pair(pair) for pair in labels])

    def more(self, written: str, pairs: Labels) -> str:
        """The text of the set written `written` with `pairs` after its own."""
        if len(pairs) == 1 and written:
            return f"{written},{self.pair(pairs[0])}"
        return ",".join([written, *map(self.pair, pairs)]) if written else self.of(pairs)


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    text = LabelText()
    for family in families:
        if not family.samples:
            continue
        lines.append(f"# HELP {family.name} {family.help.translate(_HELP_ESCAPES)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        seen: set[str] = set()
        written = family.written or [text.of(labels) for labels, _ in family.samples]
        for (_, number), inner in zip(family.samples, written, strict=True):
            if inner not in seen:
                seen.add(inner)
                lines.append(f"{family.name}{{{inner}}} {value(number)}" if inner else f"{family.name} {value(number)}")
    return "\n".join(lines) + "\n" if lines else ""
