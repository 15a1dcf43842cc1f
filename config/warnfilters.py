"""The warning filters a config's load changes, and only where no other thread meets them.

Owns `filtered(change)`: Python's warning filters (3.11-3.13) are the process's, and
`warnings.catch_warnings` is not thread-safe: it changes `warnings.filters` for every
thread, and puts the list it saved back whole at its end. Changed while another thread
runs, that thread's warnings meet the config's filters (an `error` it relies on shown
instead), and a filter it adds meanwhile is dropped. Those Pythons offer nothing
narrower (a filter per call or per thread: 3.14's context-aware warnings), so the change is
made only when this is the process's one thread: a planning child (forked: `stoker run`,
`stoker inspect`), or a library caller's single thread; else the process's own filters
stand (its caller's choice), as `executor.local.planning.plan_apart` forks only then.
No I/O but /proc/self/task's listing.

And `compiled(text, filename)`, how the loader compiles a config's text (inside `filtered`):
`compile(text, filename, "exec", optimize=0)` as `config.loader` calls it, without making the
compiler's syntax-tree classes (issue 14, plancut). `compile()` first asks whether its source
is a syntax tree (CPython's `PyAST_Check`), which makes the 119 classes of `ast` the first
time a process asks: 0.8-1.1 ms of a first run's planning child, on its path to its first
process (a new config's text: no cache holds its code). The C API's `Py_CompileStringExFlags`
compiles a text to the same code without that question, so the child makes those classes
only as it judges the files read (`config.purity`), after its plan was sent. The same code
(tests/unit/test_config_compiled.py compares them), errors and warnings (the same parser and
compiler): as `compile()` does for a `str`, the text goes as UTF-8 with its coding cookie
ignored, at this Python's minor version, with the future the calling module has (`compile()`
inherits its caller's: `config.loader`'s `from __future__ import annotations`). The call goes
through `_ctypes`, as `executor.procs.earlyfork` calls the C library (`ctypes` itself costs 4
ms), holding the GIL and raising the error the call set (`FUNCFLAG_PYTHONAPI`); `compile()`
itself where that cannot be had (another implementation, no `_ctypes`), and for a text holding
a NUL character, which the C call would cut short where `compile()` reports it. (Here, not in
a module of its own: `stoker run`'s budget of Stoker's modules, tests/e2e/test_startup_imports.py.)
"""
from __future__ import annotations

import _thread
import contextlib
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from types import CodeType


@contextlib.contextmanager
def filtered(change: Callable[[], None]) -> Iterator[bool]:
    """Inside, the filters as `change()` sets them (saved and put back by `catch_warnings`)
    when this is the process's only thread; else untouched. Yields whether it changed them."""
    if not alone():
        yield False
        return
    with warnings.catch_warnings():
        change()
        yield True


def alone() -> bool:
    """Whether this is the process's one thread: the kernel's count (/proc/self/task), which
    has those `_thread.start_new_thread` made (a C extension's, an older library's) that
    `threading.active_count()` does not count and that meet the process's filters as well,
    from the moment it returns: `_thread._count()` counts one only as it first takes the GIL
    (a load then changed the filters it met). Without /proc: `threading`'s count and
    `_thread`'s, which a forked child (3.11) does not reset (the parent's threads stay
    counted there, where only the forking thread lives on: not alone)."""
    if threading.active_count() > 1:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return _thread._count() == 0


def ignored() -> None:
    """Every warning ignored: a config's code as it is compiled, whatever -W says (`error`
    made an invalid escape, '\\d', a syntax error)."""
    warnings.simplefilter("ignore")


def shown_not_raised() -> None:
    """The filters as given (-W), an `error` one as `default`: the config's own
    `warnings.warn` is shown, as Aurora's client shows it, never raised (was: every warning
    ignored, the config's own too)."""
    given = [("default", *rule[1:]) if rule[0] == "error" else rule for rule in warnings.filters]
    warnings.resetwarnings()  # a public way to tell the registries the filters changed
    cast("list[Any]", warnings.filters).extend(given)  # typeshed: a Sequence


_SOURCE_IS_UTF8 = 0x0100  # PyCF_SOURCE_IS_UTF8: set by `compile()` for every source
_IGNORE_COOKIE = 0x0800  # PyCF_IGNORE_COOKIE: set by `compile()` for a `str` source
_FILE_INPUT = 257  # Py_file_input: "exec"
# the C call and a maker of its `PyCompilerFlags`, once made (None: not to be had here)
_made_once: list[tuple[Callable[..., CodeType], Callable[[], object]] | None] = []


def compiled(text: str, filename: str) -> CodeType:
    """`compile(text, filename, "exec", optimize=0)`, called from `config.loader`."""
    made = _made_once[0] if _made_once else _made()
    if made is None or "\0" in text:
        return compile(text, filename, "exec", optimize=0)
    try:
        source = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: `compile()` says so
        return compile(text, filename, "exec", optimize=0)
    call, flags = made
    return call(source, os.fsencode(filename), _FILE_INPUT, flags(), 0)


def _made() -> tuple[Callable[..., CodeType], Callable[[], object]] | None:
    """The C API's `Py_CompileStringExFlags`, callable, and a maker of the flags `compile()`
    would pass it (see the docstring), new for each call: the compiler adds to them the
    futures a text imports, which must not reach the next (an `include()`d file); None
    where the call cannot be had."""
    made = None
    if sys.implementation.name == "cpython":
        try:
            import __future__

            import _ctypes

            class _Int(_ctypes._SimpleCData):
                _type_ = "i"

            class _Object(_ctypes._SimpleCData):
                _type_ = "O"

            class _Flags(_ctypes.Structure):
                _fields_ = [("cf_flags", _Int), ("cf_feature_version", _Int)]

            class _Function(_ctypes.CFuncPtr):
                _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_PYTHONAPI
                _restype_ = _Object

            def flags() -> object:
                value = _SOURCE_IS_UTF8 | _IGNORE_COOKIE | __future__.annotations.compiler_flag
                return _ctypes.byref(_Flags(value, sys.version_info.minor))

            address = _ctypes.dlsym(_ctypes.dlopen(None, os.RTLD_NOW), "Py_CompileStringExFlags")  # type: ignore[arg-type]
            made = (_Function(address), flags)
        except (ImportError, AttributeError, TypeError, OSError):
            made = None
    _made_once.append(made)
    return made
