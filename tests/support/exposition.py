"""A strict parser of Prometheus' text exposition format, version 0.0.4, for the tests of
`GET /metrics`: written from the format's description, not from the observer's writer, so
that it judges it.

`parse(text)` → `Parsed`, or `ExpositionError` naming the line and what is wrong with it:

- lines end with a line feed, the last one too; an empty line is skipped;
- `# HELP NAME TEXT` (TEXT escapes only `\\\\` and `\\n`) and `# TYPE NAME TYPE` (counter,
  gauge, histogram, summary or untyped): at most one of each per family, before its first
  sample; any other `#` line is a comment;
- a sample: `NAME[{LABEL="VALUE",...}] VALUE [TIMESTAMP]`, the name matching
  `[a-zA-Z_:][a-zA-Z0-9_:]*`, each label name `[a-zA-Z_][a-zA-Z0-9_]*` (not `__...`, once
  per sample), each label value in double quotes escaping only `\\\\`, `\\"` and `\\n` (a raw
  line feed cannot occur: it ends the line), an optional comma after the last label;
  VALUE a float as Go writes it (`+Inf`, `-Inf`, `NaN` included), TIMESTAMP an integer;
- each family's lines together (a family that comes back after another's is an error);
  a histogram's or summary's `_bucket`, `_sum` and `_count` are its family's;
- no two samples of one name with the same labels; a counter is never negative.
"""
from __future__ import annotations

import math
import re
from typing import Any

import attrs

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
FLOAT = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")
TIMESTAMP = re.compile(r"^-?[0-9]+$")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


class ExpositionError(ValueError):
    """The text breaks the exposition format; the message says where and how."""


@attrs.define
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@attrs.define
class ParsedFamily:
    name: str
    kind: str = "untyped"
    help: str | None = None
    samples: list[Sample] = attrs.Factory(list)
    typed: bool = False  # its TYPE line was read


@attrs.define
class Parsed:
    families: dict[str, ParsedFamily] = attrs.Factory(dict)

    def samples(self, name: str, **labels: str) -> list[Sample]:
        """The samples of `name` whose labels include `labels`."""
        family = self.families.get(_family_of(name, self.families))
        return [s for s in (family.samples if family else []) if s.name == name
                and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, name: str, **labels: str) -> float:
        """The one sample of `name` whose labels include `labels`."""
        found = self.samples(name, **labels)
        if len(found) != 1:
            raise AssertionError(f"{len(found)} samples of {name} with {labels}")
        return found[0].value


def _family_of(name: str, families: dict[str, ParsedFamily]) -> str:
    for family in families.values():
        if name != family.name and name.startswith(family.name) and \
                name[len(family.name):] in SUFFIXES.get(family.kind, ()):
            return family.name
    return name


def _unescape(text: str, allowed: str, where: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text) or text[i + 1] not in allowed:
                raise ExpositionError(f"{where}: bad escape {text[i:i + 2]!r}")
            out.append("\n" if text[i + 1] == "n" else text[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _float(text: str, where: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}[text]
    if not FLOAT.match(text):
        raise ExpositionError(f"{where}: {text!r} is not a float")
    return float(text)


def _labels(line: str, i: int, where: str) -> tuple[dict[str, str], int]:
    """The labels from line[i] (just past `{`) and where the line goes on after `}`."""
    labels: dict[str, str] = {}
    while True:
        if i < len(line) and line[i] == "}":
            return labels, i + 1
        found = LABEL_NAME.match(line, i)
        if not found:
            raise ExpositionError(f"{where}: bad label name at {line[i:i + 20]!r}")
        name = found.group()
        if name.startswith("__") or name in labels:
            raise ExpositionError(f"{where}: label {name!r} reserved or repeated")
        i = found.end()
        if line[i:i + 2] != '="':
            raise ExpositionError(f"{where}: label {name!r} is not followed by =\"")
        j = i + 2
        while j < len(line) and line[j] != '"':
            j += 2 if line[j] == "\\" else 1
        if j >= len(line):
            raise ExpositionError(f"{where}: label {name!r}'s value is not closed")
        labels[name] = _unescape(line[i + 2:j], '\\"n', where)
        i = j + 1
        if i < len(line) and line[i] == ",":
            i += 1
        elif i >= len(line) or line[i] != "}":
            raise ExpositionError(f"{where}: expected , or }} after label {name!r}")


class _Parser:
    def __init__(self) -> None:
        self.parsed = Parsed()
        self.done: set[str] = set()  # families whose lines ended
        self.current: str | None = None
        self.seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()

    def enter(self, family: str, where: str) -> ParsedFamily:
        if family != self.current:
            if family in self.done:
                raise ExpositionError(f"{where}: family {family} comes back after another's lines")
            if self.current is not None:
                self.done.add(self.current)
            self.current = family
        return self.parsed.families.setdefault(family, ParsedFamily(family))

    def comment(self, line: str, where: str) -> None:
        parts = line.split(None, 3)
        if len(parts) < 2 or parts[1] not in ("HELP", "TYPE"):
            return  # a comment
        if len(parts) < 3 or not NAME.fullmatch(parts[2]):
            raise ExpositionError(f"{where}: {parts[1]} without a valid metric name")
        family = self.enter(parts[2], where)
        if parts[1] == "HELP":
            if family.help is not None:
                raise ExpositionError(f"{where}: a second HELP for {parts[2]}")
            family.help = _unescape(line.split(None, 3)[3] if len(parts) > 3 else "", "\\n", where)
        else:
            if len(parts) != 4 or parts[3] not in TYPES:
                raise ExpositionError(f"{where}: bad TYPE line")
            if family.samples or family.typed:
                raise ExpositionError(f"{where}: TYPE of {parts[2]} again, or after its samples")
            family.kind, family.typed = parts[3], True

    def sample(self, line: str, where: str) -> None:
        found = NAME.match(line)
        if not found:
            raise ExpositionError(f"{where}: no metric name")
        name, i = found.group(), found.end()
        labels: dict[str, str] = {}
        if i < len(line) and line[i] == "{":
            labels, i = _labels(line, i + 1, where)
        rest = line[i:]
        if rest and rest[0] not in " \t":
            raise ExpositionError(f"{where}: no blank between the name and the value")
        fields = rest.split()
        if len(fields) not in (1, 2) or (len(fields) == 2 and not TIMESTAMP.match(fields[1])):
            raise ExpositionError(f"{where}: expected a value and an optional timestamp, got {rest!r}")
        value = _float(fields[0], where)
        family = self.enter(_family_of(name, self.parsed.families), where)
        key = (name, frozenset(labels.items()))
        if key in self.seen:
            raise ExpositionError(f"{where}: a second sample of {name} with {labels}")
        if family.kind == "counter" and value < 0:
            raise ExpositionError(f"{where}: counter {name} is negative")
        self.seen.add(key)
        family.samples.append(Sample(name, labels, value))


def parse(text: str | bytes) -> Parsed:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ExpositionError(f"not UTF-8: {exc}") from None
    if text and not text.endswith("\n"):
        raise ExpositionError("the last line does not end with a line feed")
    parser = _Parser()
    for number, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {number}"
        if not line.strip():
            continue
        if line.startswith("#"):
            parser.comment(line, where)
        else:
            parser.sample(line, where)
    return parser.parsed


def families_of(parsed: Parsed) -> dict[str, Any]:
    """{name: (type, help, number of samples)}, for messages."""
    return {n: (f.kind, f.help, len(f.samples)) for n, f in parsed.families.items()}
