"""The compiles attrs' own import asks for, served from the attrs code cache.

The first call of the builtin `compile()` in a process makes the compiler's 119 syntax-tree
classes (`ast.AST` and its subclasses: the call asks whether its argument is a tree), about
0.2 MiB that the process then holds for its whole life; `exec`, `eval` and `import` of
source compile without them. A supervisor's one caller is attrs as it loads: its package
makes classes of its own (`Attribute`, `Factory`, `Converter`, `VersionInfo`, ...), whose
methods it compiles before `executor.codecache` serves its compile step, and
`attr._make._Attributes`, a `typing.NamedTuple` with annotations as strings, has `typing`
compile each (`ForwardRef`). So `codecache.install()` imports attrs within `served()`: for
that while, `compile` in the namespace of `attr._make` (set before its code runs, by a
finder on `sys.meta_path`) and of `typing` is `ServedCompile`, the builtin for any call but
a source string's in mode `exec` or `eval` without flags, and for those the code cache's
code of that source (compiled when the file lacks it, then written with the rest). Each
code is the one the builtin gives its caller (its `__future__` features: `dont_inherit`,
with the caller's own), but for its columns, as the cache's other code (`nodoccode.lines_only`:
a source string has no line for a traceback to show). Both names are gone from the two
namespaces once attrs is loaded, as its modules have them.
"""
from __future__ import annotations

import builtins
import contextlib
import sys

# importlib's own finder, from the frozen module the interpreter started with, as
# `executor/nodocs.py` takes its loaders: `importlib.machinery` would load `importlib` and
# `importlib._abc`, which a supervisor started as `stoker` then held for nothing
from _frozen_importlib_external import PathFinder
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

SEEDED = "attr._make"  # attrs' module whose `compile` makes its classes' methods (attrs 22.2 to 26.1)
_FUTURES = 0x1FE0000  # the `__future__` features of a code's flags (CPython's PyCF_MASK, 3.11 to 3.13)


class ServedCompile:
    """`compile()`, with the code of a source string (mode `exec` or `eval`, no flags) from
    `code_for(source, filename, mode, flags)`; any other call is the builtin's, with the
    `__future__` features its caller's code has, as the builtin called there would inherit."""

    def __init__(self, code_for: Any) -> None:
        self.code_for = code_for

    def __call__(self, source: Any, filename: Any, mode: str, flags: int = 0, dont_inherit: bool = False,
                 optimize: int = -1, **kwargs: Any) -> Any:
        futures = sys._getframe(1).f_code.co_flags & _FUTURES  # the caller's, not this module's
        if type(source) is not str or type(filename) is not str or mode not in ("exec", "eval") \
                or flags or dont_inherit or optimize != -1 or kwargs:
            # the builtin called here would inherit this module's features: given the caller's
            return builtins.compile(source, filename, mode, flags if dont_inherit else flags | futures, True, optimize,
                                    **kwargs)
        return self.code_for(source, filename, mode, futures)


@contextlib.contextmanager
def served(code_for: Any) -> Iterator[None]:
    """attrs' modules and `typing` compile with `ServedCompile(code_for)` while attrs loads
    within (see the docstring); a module loaded already is left as it is."""
    serve = ServedCompile(code_for)
    typing = sys.modules.get("typing")
    finder = _Seeder(serve) if SEEDED not in sys.modules else None
    if finder is not None:
        sys.meta_path.insert(0, finder)
    seeded = [typing] if typing is not None and "compile" not in vars(typing) else []
    for module in seeded:
        module.compile = serve  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if finder is not None:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(finder)
            seeded += finder.seeded
        for module in seeded:
            if vars(module).get("compile") is serve:
                del module.compile


class _Seeder:
    """A finder on `sys.meta_path` for SEEDED alone: its namespace has `compile` before its code runs."""

    def __init__(self, serve: ServedCompile) -> None:
        self.serve = serve
        self.seeded: list[ModuleType] = []

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name != SEEDED:
            return None
        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _SeededLoader(spec.loader, self)  # type: ignore[assignment]
        return spec


class _SeededLoader:
    """A loader that puts `compile` in the module's namespace, then runs its code with `loader`."""

    def __init__(self, loader: Any, seeder: _Seeder) -> None:
        self.loader = loader
        self.seeder = seeder

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.compile = self.seeder.serve  # type: ignore[attr-defined]
        self.seeder.seeded.append(module)
        self.loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:  # get_filename, get_source, ...: the loader's
        return getattr(self.loader, name)
