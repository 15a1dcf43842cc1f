"""Standard modules that load when first used, not when first imported.

A supervisor holds every module it imported for its whole life, and some it imports only
because a module it needs imports them, reading none of their names: attrs imports
`inspect` as it loads (`attr/_compat.py`, `attr/_make.py`), and `inspect` brings `ast`
(with the compiler's 120-odd syntax-tree classes), `dis` and `opcode`; `subprocess` imports
`locale` (its tables of 1,000-odd locale aliases), for text mode without an encoding;
`linecache` imports `tokenize` and `token` (and their regular expressions), for a
traceback's source lines; `urllib.parse`, which `pathlib` imports (for `Path.as_uri()`),
imports `ipaddress` (its classes, constants and their networks), for the host of a URL
in brackets, and `pathlib` itself reads `urllib.parse` only for `as_uri()`, `ntpath` only
for a Windows path and `fnmatch` only to match or glob a pattern (Python 3.12's as it
loads too: not deferred there; none of which a supervisor does: 0.1 MiB, with
`urllib.parse`'s eight named tuple classes); attrs imports `platform`
(its parsers of version strings, 0.09 MiB) to ask `python_implementation()` once;
`subprocess` imports `selectors` (its selector classes, their keys and mappings) for
`communicate()` alone, which a supervisor never calls (its control socket's loop waits in
an `epoll` of its own: `executor/host/control.py`). attrs reads `inspect` for a class with a converter (its
own `_NotValidator`, in `attr.validators`, has one: `inspect.signature` of the converter,
for the annotations of its first parameter and its return), an `__attrs_pre_init__` or a cached property; no
class of Stoker's has one. attrs' package imports its `validators`, `converters` and
`filters` (and `attrs`' the same three, which import theirs whole), which nothing of
Stoker's reads: `validators` alone makes 13 attrs classes of its own as it loads
(0.2 MiB of a supervisor, with the others' functions; ATTRS_UNREAD). A submodule is
found without importing its package (`_spec`), since the package imports it. So the entry
point (`executor/cli/start.py`) calls `defer()` before attrs is imported:

- Each module of LAZY is put in `sys.modules` unloaded, with a module `__getattr__` (PEP
  562) that runs its code at the first read of a name its namespace lacks
  (`inspect.signature`, `from inspect import getsource`, a config's code, a debugger's): the
  whole module, as `import` would have run it, with the loader `import` would have used
  (no docstrings, but a config's imports keep theirs: `executor/nodocs.py`). `import
  inspect` alone reads only `__spec__` and `__name__`, which it has, and loads nothing.
  `dir(inspect)` loads it too (a module `__dir__`); `vars()` and `__dict__`, which no hook
  sees, show only the few names it has until then (its `__doc__` is None).
  One thread runs the code; another that reads a name meanwhile waits for it (a lock), a
  name the code has set already too (a function whose globals are not all there yet: the
  module is of class `_Loading` meanwhile). A read whose load failed (its file unreadable,
  EMFILE; its code raised) raises that error and leaves the module as it was, deferred: the
  next read runs it again (the modules that imported it hold this module object, so it is
  never taken out of `sys.modules`). A module `importlib.reload()` ran (with import's
  loader) counts as loaded, never run again.
  A module already loaded, or one Python cannot find, is left as it is. A submodule is its
  package's attribute as import makes it (`import urllib.parse` then `urllib.parse.quote`,
  as `http.client` reads it): where the package is loaded, or is one of PARENTS (an empty
  `__init__`), imported first. A package is deferred with the submodules its `__init__`
  imports (JSON): a submodule imported first that imports from its package would run the
  package's code, which imports it back half loaded (an ImportError).
- A few names of a lazy module are served without loading it (SERVED): its stand-in
  has them, as functions that answer what the module's own would, or else load the module
  and call its own. `platform.python_implementation()` is answered from
  `sys.implementation.name` for the four interpreters platform names (`CPython`, `PyPy`,
  `IronPython`, `Jython`), as attrs asks it. `pathlib`'s `from urllib.parse import
  quote_from_bytes` gets a stand-in that loads `urllib.parse` when called, and
  `subprocess`'s `_PopenSelector = selectors.PollSelector` one that loads `selectors` when
  `communicate()` calls it. `inspect.isclass(obj)` is `isinstance(obj,
  type)`, its whole code; `pprint.pformat` loads `pprint` when called: the two names
  pystachio imports from them (`from inspect import isclass`, `from pprint import
  pformat`), for a first run's planning child and `stoker executor`, which loaded `inspect`
  (with `dis` and `opcode`) and `pprint` (with `dataclasses`) for them and read neither
  as a config loads: 3-9 ms of the planning child, on a first run's path to its first
  process. Once the module runs, its own functions replace them in its namespace (a name
  imported before keeps the stand-in's, which answers as the module's own, and pickles as
  it: by reference to the module's own, read where it is unpickled).
- Not `traceback`, nor `textwrap`, which `traceback` reads for every exception it formats
  (`textwrap.indent`, not only an exception group's): `logging` formats an exception with
  them, and a first load then could fail (EMFILE) where the log line must not (it was
  lost). Python 3.13's `traceback` imports `ast` (which `inspect` loads) for a frame's
  `^^^` marks: Stoker's log formatters write a traceback they fail to format without its
  source lines (`executor/cli/logsetup.py`). The others' readers already expect an
  `OSError` there (`linecache`) or cannot work without descriptors anyway (`subprocess`).
- attrs' own extractor of a converter's annotations (`attr._compat._AnnotationExtractor`)
  is served by `PlainAnnotations`, as `attr._compat` loads (a finder on `sys.meta_path`
  until then): a plain function's annotations read as `inspect.signature` reads them (its
  code's first parameter, `__annotations__`), anything else by attrs' own (which loads
  `inspect`). An extractor without the two methods this knows is left as attrs has it.

`stoker run` at N=100 holds about 1.1 MiB less (USS 13.13 → 12.02 MiB; medians of 12
interleaved runs, against main and then against `inspect` alone deferred: 0.67 MiB for
`inspect`, 0.43 for the others, `textwrap` then among them: some 45 KiB of its allocations
are back); `ipaddress` 0.22 MiB more and `platform` 0.08 (USS 11.86 → 11.64 MiB, and with
the code cache's `Fields` 11.36 → 11.28; medians of 12 interleaved runs); attrs' three
modules and their `attrs` twins 0.2 MiB more (USS 11.16 → 10.96 MiB, 8 interleaved runs);
`urllib.parse`, `ntpath` and `fnmatch` 0.12 MiB more (USS 10.72 → 10.59 MiB, 8 interleaved runs);
`selectors` 0.04 MiB more (USS 10.17 → 10.14 MiB, 8 interleaved runs).
STOKER_CODE_CACHE=off turns it off, as it does the modules without docstrings and
the attrs code cache: the process then loads as Python would. Process-wide, imperative by
nature, as `nodocs.install()` is.
"""
from __future__ import annotations

import _frozen_importlib as _bootstrap  # importlib's own (see below)
import _thread
import contextlib
import sys

# importlib's finder and its `module_from_spec` and `_find_spec`, from the frozen modules the
# interpreter started with (`executor/compileserved.py`): `importlib.util` would load
# `importlib`, `importlib._abc` and `importlib.machinery`, which a supervisor started as
# `stoker` then held for nothing (`python -m` loads them for `runpy`)
from _frozen_importlib_external import PathFinder
from types import FunctionType, MethodType, ModuleType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from typing import Any

ATTRS_COMPAT = "attr._compat"  # where attrs keeps its `_AnnotationExtractor` (attrs 22.2 to 26.1)

# attrs' modules its package imports (`attr/__init__.py`, `attrs/__init__.py`) and nothing of Stoker's reads
ATTRS_UNREAD = ("attr.validators", "attrs.validators", "attr.converters", "attrs.converters", "attr.filters",
                "attrs.filters")
# Python 3.12's pathlib reads `fnmatch.translate` as it loads (3.11's and 3.13's only to match
# a pattern): deferred there, it loaded at once, behind a stand-in for nothing
_FNMATCH = () if sys.version_info[:2] == (3, 12) else ("fnmatch",)
# imported by modules a supervisor loads, never read by it (see the docstring)
LAZY = ("inspect", "locale", "tokenize", "token", "ipaddress", "platform", "pprint", "urllib.parse", "ntpath",
        *_FNMATCH, "selectors", *ATTRS_UNREAD)
# `json` as a first run's planning child defers it (`launchfirst._fork_ahead`), with the
# submodules its package imports: the package deferred alone, `import json.decoder` (a
# config's) ran decoder's code, whose `from json import scanner` ran the package's, whose
# `from .decoder import JSONDecoder` found `json.decoder` half loaded (an ImportError)
JSON = ("json", "json.decoder", "json.scanner", "json.encoder")
PARENTS = ("urllib",)  # packages of a LAZY submodule imported by defer() (an empty `__init__`)
_pending: set[str] = set()  # made lazy here (loaded since when its code ran: `_ran`)
# `sys.implementation.name` → what `platform.python_implementation()` says of it
_IMPLEMENTATIONS = {"cpython": "CPython", "pypy": "PyPy", "ironpython": "IronPython", "jython": "Jython"}


def _python_implementation() -> str | None:
    """`platform.python_implementation()` as `sys.implementation` tells it (None: platform's)."""
    return _IMPLEMENTATIONS.get(sys.implementation.name)


def _isclass(object: object) -> bool:  # inspect's parameter name: `isclass(object=...)` too
    """`inspect.isclass`, whose whole code this is."""
    return isinstance(object, type)


def _own(*args: object, **kwargs: object) -> None:
    """No answer of the stand-in's: the module's own function, the module loaded first."""
    return None


# a lazy module's names its stand-in answers without loading it, given the call's arguments
# (None: its own, loaded)
SERVED: dict[str, dict[str, Callable[..., object]]] = {
    "platform": {"python_implementation": _python_implementation},
    "inspect": {"isclass": _isclass},
    "pprint": {"pformat": _own},
    "urllib.parse": {"quote_from_bytes": _own},  # pathlib's, for `as_uri()`
    "selectors": {"PollSelector": _own},  # subprocess's `_PopenSelector`, for `communicate()`
}


def defer(names: tuple[str, ...] = LAZY) -> list[str]:
    """Each module of `names` not loaded yet becomes lazy (see the docstring); the names
    made lazy. Call it before anything imports them."""
    deferred = []
    for name in names:
        if name in sys.modules:
            continue
        spec = _spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            continue
        module = _bootstrap.module_from_spec(spec)
        module.__dict__["__getattr__"], module.__dict__["__dir__"] = _loading(module, spec)  # PEP 562's
        for attr, answer in SERVED.get(name, {}).items():
            module.__dict__[attr] = _Served(module.__dict__["__getattr__"], name, attr, answer)
        sys.modules[name] = module
        _bind(name, module)
        _pending.add(name)
        deferred.append(name)
    if deferred and ATTRS_COMPAT not in sys.modules:
        sys.meta_path.insert(0, AttrsCompatHook())
    return deferred


def _bind(name: str, module: ModuleType) -> None:
    """A submodule made the attribute of its package, as import does, where the package is
    loaded (or one of PARENTS: imported here); else its package's own import binds it."""
    package, _, child = name.rpartition(".")
    if package in PARENTS:
        __import__(package)
    parent = sys.modules.get(package) if package else None
    if parent is not None:
        setattr(parent, child, module)


def _spec(name: str) -> ModuleSpec | None:
    """Where import would find module `name`, without importing its package (a submodule's
    `find_spec` would run the package's `__init__`, which imports it)."""
    package, _, _ = name.rpartition(".")
    if not package:  # `importlib.util.find_spec(name)` of a name with no package
        loaded = sys.modules.get(name)
        return loaded.__spec__ if loaded is not None else _bootstrap._find_spec(name, None)  # type: ignore[attr-defined]
    found = _spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    return PathFinder.find_spec(name, found.submodule_search_locations)


def _loading(module: ModuleType, spec: ModuleSpec) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module's `__getattr__` (PEP 562: a name its namespace lacks) and `__dir__`
    (`dir(module)`) until it loaded: they run its code, as `import` would have, then give
    the name, or all of them (not only the few it has unloaded). They stay in the namespace
    while the code runs, so that another thread's read of a name the module lacks waits for
    the load (and gets the name), as a read of one it has does (`_held`), instead of finding
    the namespace half filled; a read of the loading thread itself
    (a signal handler, a circular read) is an AttributeError, as a partly imported module's.
    `__path__`, which `from MODULE import NAME` looks for first, is an AttributeError at once,
    as the loaded module's: a module that is not a package has none."""
    lock = _thread.RLock()
    loading = [False]  # True while a thread runs the module's code

    def __getattr__(attr: str) -> object:
        if attr == "__path__" and spec.submodule_search_locations is None:
            raise AttributeError(f"module {spec.name!r} has no attribute '__path__'", name=attr, obj=module)
        with lock:  # one thread runs the module's code; another waits for it, then reads
            if loading[0]:
                raise AttributeError(f"partially initialized module {spec.name!r} has no attribute {attr!r}"
                                     " (read while it loads)", name=attr, obj=module)
            if module.__dict__.get("__getattr__") is __getattr__:
                if not _ran(module):  # (a reload ran it already)
                    loading[0] = True
                    try:
                        _held(module, lock, _run, spec)
                    finally:
                        loading[0] = False
                for name, ours in (("__getattr__", __getattr__), ("__dir__", __dir__)):
                    if module.__dict__.get(name) is ours:  # not the module's own
                        del module.__dict__[name]
        return getattr(module, attr)

    def __dir__() -> list[str]:
        __getattr__("__name__")  # (a name it has: only the load)
        return sorted(module.__dict__)

    return __getattr__, __dir__


def _held(module: ModuleType, lock: Any, run: Callable[[ModuleType, ModuleSpec], None], spec: ModuleSpec) -> None:
    """`run(module, spec)` with the module of class `_Loading` meanwhile (when it is a plain
    module): another thread's read of a name it has already (a function its code defined,
    whose globals are not all there yet) waits for the load too, as a read of a name it
    lacks does (its `__getattr__`)."""
    plain = type(module) is ModuleType
    if plain:
        _LOADING[id(module)] = lock
        module.__class__ = _Loading
    try:
        run(module, spec)
    finally:
        if plain:
            module.__class__ = ModuleType
            del _LOADING[id(module)]


_LOADING: dict[int, Any] = {}  # id of a module of class `_Loading` → the lock its loading thread holds


class _Loading(ModuleType):
    """A deferred module's class while its code runs (`_held`): a read waits until the
    loading thread, which holds the module's lock, is done (its own reads go on: an RLock)."""

    def __getattribute__(self, name: str) -> Any:
        lock = _LOADING.get(id(self))
        if lock is not None:  # the loading thread holds it until done (its own reads go on: an RLock)
            lock.acquire()
            lock.release()
        return ModuleType.__getattribute__(self, name)  # (of a plain module again by then)


class _Served:
    """A stand-in's function `name`: `answer(*args, **kwargs)`, or when that is None the
    module's own (`load`, its `__getattr__`: the module runs first if it has not), called
    so. It is named as the module's own, binds as a function does (a class attribute), and
    pickles as the module's own, read at load time (`getattr(importlib.import_module(MODULE),
    NAME)`): a function pickles by its module and name only while the module holds that very
    function, and once the module ran its own replaces the stand-in there (a stand-in
    imported before, such as pystachio's `pformat`, did not pickle then)."""

    def __init__(self, load: Callable[[str], Any], module: str, name: str, answer: Callable[..., object]) -> None:
        self._load, self._answer = load, answer
        self.__module__, self.__name__, self.__qualname__ = module, name, name

    def __call__(self, *args: object, **kwargs: object) -> object:
        found = self._answer(*args, **kwargs)
        return self._load(self.__name__)(*args, **kwargs) if found is None else found

    def __get__(self, instance: object, owner: type | None = None) -> object:
        return self if instance is None else MethodType(self, instance)

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return getattr, (_ModuleNamed(self.__module__), self.__name__)

    def __copy__(self) -> _Served:  # a function's copy is itself
        return self

    def __deepcopy__(self, memo: object) -> _Served:
        return self

    def __repr__(self) -> str:
        return f"<function {self.__module__}.{self.__name__} (deferred)>"


class _ModuleNamed:
    """Pickles as module `name`, imported when unpickled (`importlib.import_module`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        import importlib

        return importlib.import_module, (self.name,)


def _run(module: ModuleType, spec: ModuleSpec) -> None:
    """The module's code run in its namespace; if that fails (its file unreadable, EMFILE;
    its code raised), none of the names it set stay, and the error is raised."""
    before = dict(module.__dict__)
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]  # defer() checked it
    except BaseException:
        module.__dict__.clear()
        module.__dict__.update(before)
        raise


def is_loaded(name: str) -> bool:
    """Whether module `name` was imported and, if it was deferred, has loaded since."""
    return name in sys.modules and (name not in _pending or _ran(sys.modules[name]))


def _ran(module: ModuleType) -> bool:
    """Whether the module's code ran (its `__builtins__`, which running it sets), by this
    module's `__getattr__` or by `importlib.reload()`, which runs it with import's loader."""
    return "__builtins__" in module.__dict__


class AttrsCompatHook:
    """A finder on `sys.meta_path` until attrs' `attr._compat` loads: it then serves that
    module's `_AnnotationExtractor` with `PlainAnnotations` (see the docstring)."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name != ATTRS_COMPAT:
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _Then(spec.loader)  # type: ignore[assignment]  # a loader, not importlib.abc's subclass
        return spec


class _Then:
    """A loader that runs the module's code with `loader`, then serves its extractor."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        serve_attrs(module)

    def __getattr__(self, name: str) -> Any:  # get_filename, get_source, ...: the loader's
        return getattr(self.loader, name)


def serve_attrs(compat: ModuleType) -> bool:
    """attrs' `_compat` module's extractor served by `PlainAnnotations` (False: not the
    extractor this module knows, left as it is)."""
    original = getattr(compat, "_AnnotationExtractor", None)
    if not isinstance(original, type) or not all(
            hasattr(original, m) for m in ("get_first_param_type", "get_return_type")):
        return False
    compat._AnnotationExtractor = type("_AnnotationExtractor", (PlainAnnotations,),  # type: ignore[attr-defined]
                                       {"__slots__": (), "inspected": original})
    return True


class PlainAnnotations:
    """What attrs' `_AnnotationExtractor` tells of a converter (its first parameter's
    annotation, its return annotation), read from a plain function's code and
    `__annotations__` as `inspect.signature` reads them; any other callable (a builtin, a
    class, a `functools.partial`, a function with `__wrapped__` or `__signature__`, or
    with no positional parameter) through attrs' own, which loads `inspect`."""

    __slots__ = ("first", "returns", "other")
    inspected: Any = None  # attrs' own extractor class (`serve_attrs`)

    def __init__(self, callable: Any) -> None:
        code = getattr(callable, "__code__", None)
        if (type(callable) is not FunctionType or code is None or not code.co_argcount
                or hasattr(callable, "__wrapped__") or hasattr(callable, "__signature__")
                or not isinstance(callable.__annotations__, dict)):
            self.other = self.inspected(callable)
            return
        self.other = None
        self.first = callable.__annotations__.get(code.co_varnames[0])
        self.returns = callable.__annotations__.get("return")

    def get_first_param_type(self) -> Any:
        return self.first if self.other is None else self.other.get_first_param_type()

    def get_return_type(self) -> Any:
        return self.returns if self.other is None else self.other.get_return_type()
