"""A config file's text compiled to code exactly as the builtin `compile()` compiles it, without
what its first call costs a process: `compile()` first asks whether its source is an AST object
(`PyAST_Check`), and that question makes the compiler's AST node classes, some 120 of them,
0.7-0.9 ms of CPU once per process, which compiling a text never uses. A new config's planning
child compiled its file on the path to its first process's start; the one reader of the AST
there, `config.purity`'s judgement, comes after the plan is sent (executor/local/planning.py).

`compile_text` calls the C function `compile()` calls for a text (`Py_CompileStringObject`)
through `_ctypes` (the C module under `ctypes`, which the entry point loads before the planning
child's fork: executor/procs/earlyfork.py), with the flags `compile()` gives it: the text's
UTF-8 with its coding cookie ignored, the caller's `__future__` features, this Python's minor
version as the feature version. The same code comes out (tests/unit/test_compiletext.py
compares it, marshalled), with the same SyntaxError, warnings and `compile` audit event. A text
`compile()` refuses before compiling (a NUL; a lone surrogate, which has no UTF-8), a name
holding a NUL and a Python where the C function cannot be called (no `_ctypes`, no such symbol,
an audit hook refusing `ctypes`) get `compile()` itself.
Pure apart from that one call: no I/O, no logging.
"""
from __future__ import annotations
import __future__

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import CodeType

__all__ = ["compile_text"]

SOURCE_IS_UTF8 = 0x0100  # PyCF_SOURCE_IS_UTF8: `compile()` sets it for every source
IGNORE_COOKIE = 0x0800  # PyCF_IGNORE_COOKIE: a text is decoded already, a `coding:` line is not read
FILE_INPUT = 257  # Py_file_input: the "exec" mode
TESTED = ((3, 11), (3, 12), (3, 13))  # tests/unit/test_compiletext.py compared the code on each
# the flags `compile()` takes from its caller's code unless told not to (PyCF_MASK): its
# `__future__` features (not `nested_scopes`' CO_NESTED, a flag of every nested function's code,
# nor `generators`', 0: both always on)
FUTURE_FLAGS = 0
for _feature in ("division", "absolute_import", "with_statement", "print_function", "unicode_literals",
                 "barry_as_FLUFL", "generator_stop", "annotations"):
    FUTURE_FLAGS |= getattr(__future__, _feature).compiler_flag

# the C call, once made; None once found impossible here (asked once a process, not at each file)
_compiler: list[Callable[[bytes, str, int], CodeType] | None] = []


def compile_text(text: str, filename: str) -> CodeType:
    """`compile(text, filename, "exec", optimize=0)` as the caller's own line would run it (its
    `__future__` features inherited), without making the AST node classes."""
    flags = sys._getframe(1).f_code.co_flags & FUTURE_FLAGS
    compiler = (_compiler or _make_compiler())[0]
    # a NUL in the name: `compile()` refuses it (ValueError); the C function took it as given
    if compiler is not None and "\0" not in text and "\0" not in filename:
        try:
            source = text.encode("utf-8")
        except UnicodeEncodeError:  # `compile()` raises its own for it
            """Left to `compile()` (below)."""
        else:
            return compiler(source, filename, flags)
    return compile(text, filename, "exec", flags=flags, dont_inherit=True, optimize=0)


def _make_compiler() -> list[Callable[[bytes, str, int], CodeType] | None]:
    """`_compiler`, filled: with None where this Python cannot call the C function (no
    `_ctypes`, no such symbol, or an audit hook refusing `ctypes.dlopen` or `ctypes.dlsym`, as
    a host's sitecustomize may: the config was blamed for the hook's exception), and on any
    Python but the CPython versions whose `PyCompilerFlags` layout and `Py_file_input` this
    module was checked against (`TESTED`): a layout that moved would be read wrongly, silently."""
    if sys.implementation.name != "cpython" or sys.version_info[:2] not in TESTED:
        _compiler.append(None)
        return _compiler
    try:
        import _ctypes

        class _Int(_ctypes._SimpleCData):
            _type_ = "i"

        class _Object(_ctypes._SimpleCData):
            _type_ = "O"

        class _Flags(_ctypes.Structure):  # PyCompilerFlags
            _fields_ = (("cf_flags", _Int), ("cf_feature_version", _Int))

        class _Function(_ctypes.CFuncPtr):  # the GIL held, a Python exception raised as set
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_PYTHONAPI
            _restype_ = _Object

        function = _Function(_ctypes.dlsym(_ctypes.dlopen(None, os.RTLD_NOW),  # type: ignore[arg-type]
                                           "Py_CompileStringObject"))
    except Exception:  # ImportError, AttributeError, OSError; or whatever a refusing hook raises
        _compiler.append(None)
        return _compiler

    def compiled(source: bytes, filename: str, flags: int) -> CodeType:
        given = _Flags(SOURCE_IS_UTF8 | IGNORE_COOKIE | flags, sys.version_info.minor)
        return function(source, _Object(filename), FILE_INPUT, _ctypes.byref(given), 0)

    _compiler.append(compiled)
    return _compiler
