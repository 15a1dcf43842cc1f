"""The task document carried in TaskInfo.data (docs/contract.md §2).

Owns the byte format `{"job": {...}, "instance": N, "assigned_ports": {...}}`: `encode`
writes it (what `stoker inspect --json` prints), `decode` reads and validates it. Raw JSON
dicts stay inside this module; callers get a `TaskDocument` with a pystachio Job.

`decode` raises only `TaskDocumentError`, whatever the bytes: it rejects anything over
4 MiB before parsing, and turns every parser or schema failure into a message that says
what is wrong. No I/O, no logging.
"""
from __future__ import annotations

import json
from typing import Any

import attrs

from config.errors import ConfigError, TaskDocumentError, cut
from config.loader import prepare_job
from config.schema import Job
from config.templates import normalize_tree
from config.typed_tree import from_tree
from config.words import MAX_INT_DIGITS, json_half_pair, long_integer_problem, long_integers, quoted

MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
_KEYS = ("job", "instance", "assigned_ports")


@attrs.frozen
class TaskDocument:
    job: Any  # a validated pystachio Job
    instance: int = 0
    assigned_ports: dict[str, int] = attrs.field(factory=dict)


def encode(job: Any, instance: int = 0, assigned_ports: dict[str, int] | None = None) -> bytes:
    """The UTF-8 JSON task document for one instance of `job`."""
    doc: dict[str, Any] = {"job": json.loads(job.json_dumps()), "instance": instance}
    if assigned_ports is not None:
        doc["assigned_ports"] = dict(assigned_ports)
    return json.dumps(doc).encode("utf-8")


def decode(data: bytes | str) -> TaskDocument:
    """Parses and validates a task document; raises only TaskDocumentError."""
    try:
        return _decode(data)
    except TaskDocumentError:
        raise
    except ConfigError as exc:
        raise TaskDocumentError(f"invalid task document: {exc}", exc.problems) from None
    except (RecursionError, MemoryError):
        raise TaskDocumentError("invalid task document: it is nested too deeply to read") from None
    except Exception as exc:
        raise TaskDocumentError(f"invalid task document: {type(exc).__name__}: {exc}") from None


def _fail(reason: str) -> TaskDocumentError:
    return TaskDocumentError(f"invalid task document: {reason}")


def _decode(data: bytes | str) -> TaskDocument:
    raw = _as_bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(f"it is not UTF-8 (byte {exc.start}: {exc.reason})") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise _fail(long_integer_in(text) or f"it is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _fail(f"it must be a JSON object, not {_json_type(doc)}")
    if (half := json_half_pair(doc, "")) is not None:
        raise _fail(half)
    unknown = sorted(set(doc) - set(_KEYS))
    if unknown:
        raise _fail(f"unknown keys {_listed([quoted(cut(key, 60)) for key in unknown])} "
                    f"(expected: {', '.join(_KEYS)})")
    if "job" not in doc:
        raise _fail('it has no "job"')
    if not isinstance(doc["job"], dict):
        raise _fail(f'"job" must be a JSON object, not {_json_type(doc["job"])}')
    instance = doc.get("instance", 0)
    if isinstance(instance, bool) or not isinstance(instance, int) or instance < 0:
        raise _fail(f'"instance" must be a non-negative integer, not {_short(instance)}')
    ports = _ports(doc.get("assigned_ports", {}))
    job = from_tree(Job, normalize_tree(doc["job"]), "job")
    return TaskDocument(job=prepare_job(job, "task document"), instance=instance, assigned_ports=ports)


def long_integer_in(text: str, root: str = "") -> str:
    """Where json could not read `text`: an integer of more digits than Python reads, named
    as a config's check names it (`job.task.max_failures is an integer of more than 4300
    digits`), below `root` (a job's JSON: "job") or, without one, by the object's own keys
    (a task document's); "" for anything else. Was: "it is not JSON (Exceeds the limit ...
    use sys.set_int_max_str_digits() ...)", naming no field. Read again only on that error."""
    def number(digits: str) -> int:  # one too long: a number as long, that `long_integers` finds
        return int(digits) if len(digits.lstrip("-")) <= MAX_INT_DIGITS else 10**MAX_INT_DIGITS

    try:
        doc = json.loads(text, parse_int=number)
    except ValueError:
        return ""
    if not isinstance(doc, dict):  # no task document nor job: said so after json's words
        return ""
    found = long_integers(doc, root) if root else (path for key, value in doc.items()
                                                   for path in long_integers(value, key))
    return next(map(long_integer_problem, found), "")


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, str):
        if len(data) > MAX_DOCUMENT_BYTES:
            raise _fail(f"it is {len(data)} characters long, over the {MAX_DOCUMENT_BYTES} byte limit")
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError:
            raise _fail("it is not UTF-8 (it contains unpaired surrogates)") from None
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise _fail(f"it must be bytes or text, not {type(data).__name__}")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _fail(f"it is {len(data)} bytes, over the {MAX_DOCUMENT_BYTES} byte limit")
    return data


def _ports(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise _fail(f'"assigned_ports" must be a map of port name to number, not {_json_type(value)}')
    bad = [f"{cut(name, 60)}={_short(number)}" for name, number in value.items()
           if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 65536]
    if bad:
        raise _fail('"assigned_ports" numbers must be integers in 1..65535: ' + _listed(bad))
    return dict(value)


def _listed(items: list[str]) -> str:
    """The first 20 of `items` for a message, then how many there are: a document of
    100,000 unknown keys failed with a message of 1 MB, the TASK_FAILED's."""
    shown = ", ".join(items[:20])
    return shown if len(items) <= 20 else f"{shown}, ... ({len(items)} in all)"


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
