"""What went wrong while a config file ran, as one line an Aurora user can act on.

Owns turning an exception raised by a `.aurora` file's code into a `ConfigError`:

- where: the file and line of the config code that failed — the innermost frame in a config
  file, also when that is inside a function or a comprehension — and, when the file was
  included, the `include()` lines that led to it (one per file, never one per call);
- what: a struct built with a field it does not have names the struct and the closest
  field names (`Process has no field 'cmdlin'; did you mean 'cmdline'?`); a value of the
  wrong shape names the struct, the field, what it must be and what it got, on one line
  (pystachio's own messages are multi-line reprs); runaway recursion and memory are one
  short sentence, not a thousand frames.

Also the words for a config file that cannot be read (`unread`: the system's reason, or the
line and column where it stops being UTF-8) or compiled for want of a line Python names
(`uncompiled`: a NUL character, code nested too deeply), loaded only then.

Reads the exception's traceback (pystachio's frames say which struct and field were being
built); PURE: no I/O, no logging.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable
from types import FrameType, TracebackType
from typing import Any

from pystachio.basic import Boolean, EnumContainer, Float, Integer, String
from pystachio.composite import IsNotMappingError, Structural
from pystachio.container import ListContainer, MapContainer

from config.errors import ConfigError, ConfigTimeout, cut, show
from config.words import did_you_mean, quoted

_MAX_SHOWN = 300  # characters of an exception message quoted in a ConfigError
_PUBLIC_NAMES = {"MesosJob": "Job"}  # the schema's class name → the name configs use
_BASIC = {String: "a string", Integer: "an integer", Float: "a number", Boolean: "a boolean"}
_BUILD_FIELD = Structural._process_schema_attribute.__code__
_BUILD_STRUCT = Structural.__init__.__code__


class IncludeError(Exception):
    """`include()` was misused or its file cannot be read; the message says which."""


def exec_error(files: Iterable[str], first_file: str, exc: BaseException) -> ConfigError:
    """The ConfigError for `exc`, raised while running the config `files` (`first_file` the
    one named on the command line)."""
    files = set(files)
    where, chain = _where(files, first_file, exc)
    included = "".join(f" (included from {c})" for c in reversed(chain))
    return ConfigError(f"{where}: {_what(exc)}{included}")


def unread(exc: OSError | UnicodeDecodeError) -> str:
    """Why a config file could not be read, for a message: the system's words, or where
    the file stops being UTF-8."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, UnicodeDecodeError) and isinstance(exc.object, bytes):
        return _not_utf8(exc.object, exc.start)
    return str(exc)


def _not_utf8(data: bytes, at: int) -> str:
    """Where a file stops being UTF-8, as an editor shows it (line, column), not Python's
    byte offset into the whole file (`position 3906`)."""
    line = data.count(b"\n", 0, at) + 1
    start = data.rfind(b"\n", 0, at) + 1
    column = len(data[start:at].decode("utf-8", "replace")) + 1
    return (f"line {line}, column {column}: byte 0x{data[at]:02x} is not UTF-8 "
            "(a config is UTF-8 text: save it as UTF-8)")


def uncompiled(exc: SyntaxError | RecursionError, path: str, text: str) -> BaseException:
    """`exc`, raised compiling the config file `path` (`text`, its BOM removed), as a
    SyntaxError naming the file, and the line where there is one: Python's compiler names
    none for a NUL character, and its RecursionError (an expression of 200,000 terms) is
    no recursion of the config's code, none of which has run."""
    if "\0" in text:
        at = text.index("\0")
        line, column = text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)
        return SyntaxError(f"a NUL character at column {column} (a config is text: no source code "
                           "holds one)", (path, line, column, None))
    if isinstance(exc, RecursionError) and _depth() < sys.getrecursionlimit() // 2:  # else the stack
        # was deep already: the config's own recursion (a file that includes itself) met it here
        return SyntaxError("it is nested too deeply for Python to compile (an expression of thousands "
                           "of parts or levels?)", (path, None, None, None))
    return exc


def _depth() -> int:
    """How many frames the calling thread's stack holds."""
    frame: FrameType | None = sys._getframe()
    depth = 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def describe(value: Any) -> str:
    """A value for a message, on one line: a struct by its type, anything else by its repr."""
    if isinstance(value, Structural):
        return f"a {_public(type(value).__name__)}"
    return show(value)


def kind(klazz: Any) -> str:
    """What a schema type expects, in words: `a list of Process`, `a number`, `one of a, b`,
    `a map from String to String`."""
    if isinstance(klazz, type):
        if issubclass(klazz, Structural):
            return f"a {_public(klazz.__name__)}"
        if issubclass(klazz, ListContainer):
            return f"a list of {_name(getattr(klazz, 'TYPE', None))}"
        if issubclass(klazz, MapContainer):
            key, value = getattr(klazz, "KEYTYPE", None), getattr(klazz, "VALUETYPE", None)
            return f"a map from {_name(key)} to {_name(value)}"
        if issubclass(klazz, EnumContainer):
            return "one of " + ", ".join(getattr(klazz, "VALUES", ()))
        for basic, words in _BASIC.items():
            if issubclass(klazz, basic):
                return words
    return getattr(klazz, "__name__", "a value of another type")


def _name(klazz: Any) -> str:
    return _public(getattr(klazz, "__name__", "?"))


def _public(name: str) -> str:
    return _PUBLIC_NAMES.get(name, name)


# ---- where ----


def _frames(exc: BaseException) -> list[TracebackType]:
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    return frames


def _where(files: set[str], first_file: str, exc: BaseException) -> tuple[str, list[str]]:
    """`file:line` of the config code that failed, and the include lines that led there."""
    ours = [tb for tb in _frames(exc) if tb.tb_frame.f_code.co_filename in files]
    # Each `<module>` frame is one file being run; all but the last one ran an include().
    modules = [f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" for tb in ours
               if tb.tb_frame.f_code.co_name == "<module>"]
    if isinstance(exc, SyntaxError) and exc.filename in files:  # no line: the file, as given
        return (f"{exc.filename}:{exc.lineno}" if exc.lineno else quoted(exc.filename)), modules
    if not ours:  # the file itself, as errors name a path they were given (no line: a location)
        return quoted(first_file), []
    last = ours[-1]
    where = f"{last.tb_frame.f_code.co_filename}:{last.tb_lineno}"
    # A file that includes itself (or a cycle of them) repeats the same lines: name each once.
    return where, list(dict.fromkeys(modules[:-1]))


# ---- what ----


def _what(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"syntax error: {exc.msg}"
    if isinstance(exc, (IncludeError, ConfigTimeout)):
        return str(exc)
    if isinstance(exc, RecursionError):
        return ("RecursionError: the config code recursed too deeply (a function that calls "
                "itself without end?)")
    if isinstance(exc, MemoryError):
        return "MemoryError: the config code ran out of memory"
    schema = _schema_problem(exc)
    if schema is not None:
        return schema
    text = _message(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _message(exc: BaseException) -> str:
    """The exception's message on one line, cut; pystachio's may even fail to render."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    text = " ".join(text.split())
    return cut(text, _MAX_SHOWN)


def _schema_problem(exc: BaseException) -> str | None:
    """The struct and field pystachio was building when `exc` was raised, in words."""
    fields = [tb.tb_frame.f_locals for tb in _frames(exc) if tb.tb_frame.f_code is _BUILD_FIELD]
    structs = [tb.tb_frame.f_locals for tb in _frames(exc) if tb.tb_frame.f_code is _BUILD_STRUCT]
    if not fields:
        if structs and isinstance(exc, IsNotMappingError):
            name = _public(type(structs[-1]["self"]).__name__)
            return f"{name}(...) takes field = value arguments (or a dict), not {describe(exc.arg)}"
        return None
    frame = fields[-1]
    struct, attr, value = frame.get("self"), frame.get("attr"), frame.get("value")
    name = _public(type(struct).__name__)
    typemap = getattr(struct, "TYPEMAP", {})
    if attr not in typemap:
        return f"{name} has no field {quoted(attr)}{did_you_mean(str(attr), typemap)}"
    expected = typemap[attr].klazz
    if isinstance(exc, IsNotMappingError) and exc.arg is not value and structs:
        inner = _public(type(structs[-1]["self"]).__name__)
        return (f"{name}.{attr} must be {kind(expected)}; {describe(exc.arg)} is not "
                f"a {inner}")
    return f"{name}.{attr} must be {kind(expected)}, not {describe(value)}"
