"""attrs' generated methods, compiled once and kept like `.pyc` files.

attrs writes the source of each class's `__init__`, `__repr__`, `__eq__` and `__hash__`
and compiles it when the class is created, at import: for the 88 classes `stoker run`
creates before its first fork, about a quarter of its import time (0.5 ms a class). The
code depends only on that source, so it can be cached as Python caches a module's
bytecode: `install()` wraps attrs' compile step so that the code comes from
`executor/__pycache__/attrs-PROFILE.TAG.bin` when the same source was compiled before,
and `save()` writes the file again when something had to be compiled.

- The key is the class's generated file name (`<attrs generated methods MODULE.CLASS>`);
  the cached source must equal the new source exactly, or the code is compiled as without
  the cache. The one number that changes from process to process (the class's own term
  in `__hash__`, attrs' `hash()` of that file name, which string hashing randomizes) is
  left out of the comparison: the cached code keeps the number it was compiled with, and
  a class's instances still hash alike and apart from another class's.
- The file names the Python build (`sys.version`): another build ignores it. The code
  depends on nothing but the source, so attrs' version is not part of the key (asking
  attrs for it would load `importlib.metadata`, 50 modules). An unreadable or damaged
  file is ignored too: the cache only ever saves compiling, it never decides what runs.
- attrs also keeps each class's generated source in `linecache`, split into lines, for
  debuggers and tracebacks to show: 0.37 MiB of a supervisor's memory for its 90-odd
  classes, held for its whole life. With the cache installed it keeps none (where attrs
  has the step this module knows, `_linecache_and_compile`): a traceback through a
  generated `__init__` names its file and line, without the line's text, as for any code
  without a source file. STOKER_CODE_CACHE=off puts attrs' own behaviour back.
- The code keeps each instruction's line and not its columns (`nodocs.lines_only`, as
  Stoker's modules are loaded): with no source line to show, a traceback had no use for
  them. 413 generated methods of a supervisor: 60 → 16 KiB of location tables. FORMAT 2:
  the files of FORMAT 1 (columns kept) are compiled again.
- attrs makes, for each class, a tuple subclass of its own with a property per field (so
  that `attrs.fields(C).x` names field `x`), to hold the class's `__attrs_attrs__`: a class,
  its dictionary and a getter function per field, about 2.9 KiB a class, 0.26 MiB for a
  supervisor's 92 (`tracemalloc`). With the cache installed every class's fields are a
  `Fields`, one tuple class for all, that finds a field by its name (before the tuple's own
  names, as attrs' properties do: a field named `count` is the field): the same tuple of
  the same `Attribute`s, read the same ways, only its class is shared.
- attrs gives a class's generated methods, as their globals, its module's namespace as it
  is then (so that `typing.get_type_hints()` of an `__init__` resolves annotations written
  as strings) merged with the few names the code reads: a dictionary a class, 0.9 KiB, as
  many entries as the module has names above it. Served, they get only the names their
  code reads (`co_names`, its nested code's too): they run the same, and
  `get_type_hints()` of one resolves no other name (nothing of Stoker's asks it).
- One file per PROFILE (`run`, `executor`, `observe`, `cli`), so that a command loads the
  code of the classes it creates and little else. `save()` writes nothing when the
  interpreter is told not to write bytecode (PYTHONDONTWRITEBYTECODE) or the directory is
  not writable, as Python does for `.pyc` files; the file is written whole and renamed
  into place, so a reader sees the old one or the new one.
- The files hold code that runs, as `.pyc` files do, and are trusted as they are: whoever
  may write the package's `__pycache__` may change Stoker anyway. STOKER_CODE_CACHE moves
  them to another absolute directory (one only the user running Stoker may write), or
  turns the cache off (`off`, or anything but an absolute path): attrs compiles as ever.
  So it does when its compile step is not the one this module knows (its name and
  parameters are checked).

Process-wide, imperative by nature: `stoker`'s entry point calls `install()` before
anything defines an attrs class and `save()` before the process ends. `python -m
executor.codecache` writes every profile's file ahead of time (as `compileall` does for
`.pyc` files: for an installation its users cannot write to, run it as the installer).
"""
from __future__ import annotations

import contextlib
import marshal
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import CodeType
from typing import Any

from executor import nodocs

FORMAT = 2  # 2: code with lines only
# What each profile's command imports before it starts its work: `warm()` compiles these
# (`run`'s planning: a new config's, in the child that plans it ahead).
START_MODULES = {
    "run": ("executor.cli.main", "executor.local.run", "executor.local.planning"),
    "executor": ("executor.cli.main", "executor.mesos.process", "executor.mesos.transport"),
    "observe": ("executor.cli.main", "executor.observe.server", "executor.observe.reader"),
    "cli": ("executor.cli.main",),
}
PROFILES = tuple(START_MODULES)
# Packages every module of which `warm()` also writes without docstrings (`executor/nodocs.py`:
# a start compiles none that has a `.pyc`), for the modules loaded after the start.
NODOC_PACKAGES = ("executor", "config", "healthcheck", "pystachio")
CACHE_DIR = Path(nodocs.CACHE_DIR)
MAX_ENTRIES = 1000  # a file past this keeps only what the writing process used
_HASH_TERM = re.compile(r"(hash\(\(\s*)-?\d+")


class _Cache:
    """One process's cache: what it loaded, what it compiled since, where it writes."""

    def __init__(self, path: Path, loaded: dict[str, tuple[str, Any]]) -> None:
        self.path = path
        self.loaded = loaded  # file name → (source as compared, code), taken when used
        self.fresh: dict[str, tuple[str, Any]] = {}  # compiled by this process
        self.hits = 0
        self.compiled = 0  # and saved

    def code_for(self, script: str, filename: str) -> Any:
        source = _HASH_TERM.sub(r"\1#", script)
        cached = self.loaded.pop(filename, None)
        if cached is not None and cached[0] == source:
            self.hits += 1
            return cached[1]
        code = nodocs.lines_only(compile(script, filename, "exec"))
        self.fresh[filename] = (source, code)
        return code


_cache: _Cache | None = None


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Where the files are: STOKER_CODE_CACHE, an absolute directory, or the package's
    `__pycache__`; None when it says `off` (or is not an absolute path)."""
    directory = nodocs.cache_dir(environ)
    return None if directory is None else Path(directory)


def install(profile: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Serves attrs' compile step from the profile's file from now on (only the first call
    installs); False when the cache is off or attrs is not the one this module knows."""
    global _cache
    if _cache is not None:
        return True
    directory = cache_dir(environ)
    if directory is None or profile not in PROFILES:
        return False
    from attr import _make

    original = getattr(_make, "_compile_and_eval", None)
    if original is None or original.__code__.co_varnames[:4] != ("script", "globs", "locs", "filename"):
        return False
    path = directory / f"attrs-{profile}.{sys.implementation.cache_tag}.bin"
    cache = _Cache(path, _read(path))
    _make._compile_and_eval = _served_by(cache)
    lined = getattr(_make, "_linecache_and_compile", None)  # attrs 24.3 and later
    if lined is not None and lined.__code__.co_varnames[:4] == ("script", "filename", "globs", "locals"):
        _make._linecache_and_compile = _without_linecache
    tupled = getattr(_make, "_make_attr_tuple_class", None)
    if tupled is not None and tupled.__code__.co_varnames[:2] == ("cls_name", "attr_names"):
        _make._make_attr_tuple_class = _fields_class
    _cache = cache
    return True


class Fields(tuple):
    """An attrs class's `__attrs_attrs__`: its `Attribute`s, each also by its name."""

    __slots__ = ()

    def __getattribute__(self, name: str) -> Any:
        for field in tuple.__iter__(self):
            if field.name == name:
                return field
        return tuple.__getattribute__(self, name)


def _fields_class(cls_name: str, attr_names: list[str]) -> type:
    """attrs' `_make_attr_tuple_class` served (see the docstring): the one `Fields` class."""
    return Fields


def _without_linecache(script: str, filename: str, globs: dict[str, Any] | None,
                       locals: Mapping[str, object] | None = None) -> Any:
    """attrs' `_linecache_and_compile` without its `linecache` entry (see the docstring)."""
    from attr import _make

    found: Any = {} if locals is None else locals
    _make._compile_and_eval(script, globs, found, filename)
    return found


def _served_by(cache: _Cache) -> Callable[..., None]:
    def compile_and_eval(script: str, globs: dict[str, Any] | None,
                         locs: Mapping[str, object] | None = None, filename: str = "") -> None:
        code = cache.code_for(script, filename)
        eval(code, globs if globs is None else _read_by(code, globs), locs)  # attrs' own step, served

    return compile_and_eval


def _read_by(code: CodeType, globs: dict[str, Any]) -> dict[str, Any]:
    """The names of `globs` that `code`, or code it makes, may read as globals (see the docstring)."""
    names: set[str] = set()
    codes = [code]
    while codes:
        one = codes.pop()
        names.update(one.co_names)
        codes.extend(const for const in one.co_consts if isinstance(const, CodeType))
    return {name: globs[name] for name in names if name in globs}


def _read(path: Path) -> dict[str, tuple[str, Any]]:
    try:
        data = marshal.loads(path.read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    if not (isinstance(data, tuple) and len(data) == 3 and data[:2] == (FORMAT, sys.version)
            and isinstance(data[2], dict)):
        return {}
    return data[2]


def save() -> bool:
    """Writes the profile's file again when this process compiled something the file did
    not have (merged into what the file holds now); True when it wrote."""
    cache = _cache
    if cache is None or not cache.fresh or sys.dont_write_bytecode:
        return False
    entries = _read(cache.path)
    entries.update(cache.fresh)
    if len(entries) > MAX_ENTRIES:
        entries = dict(cache.fresh)
    temporary = cache.path.with_name(f"{cache.path.name}.{os.getpid()}.tmp")
    try:
        cache.path.parent.mkdir(exist_ok=True)
        temporary.write_bytes(marshal.dumps((FORMAT, sys.version, entries)))
        os.replace(temporary, cache.path)
    except OSError:  # not writable, as for .pyc files: the next process compiles again
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        return False
    cache.compiled += len(cache.fresh)
    cache.fresh.clear()
    return True


def counts() -> tuple[int, int]:
    """(classes served from the file, classes compiled) in this process so far."""
    cache = _cache
    return (0, 0) if cache is None else (cache.hits, cache.compiled + len(cache.fresh))


def warm(profile: str) -> bool:
    """Compiles what `profile`'s command imports at start and writes its file, whatever
    PYTHONDONTWRITEBYTECODE says (it was asked for), and each of those modules' code
    without docstrings (`executor/nodocs.py`); True when it wrote the file. Call it in a fresh
    process: a class created before `install()` is not seen."""
    import importlib

    if not install(profile):
        return False
    sys.dont_write_bytecode = False
    nodocs.install()
    for module in START_MODULES[profile]:
        importlib.import_module(module)
    nodocs.write_loaded()  # those this process loaded before the loader was in place
    nodocs.write_packages(NODOC_PACKAGES)  # and those a command loads when it needs them
    return save()


def main(argv: list[str]) -> int:
    """`python -m executor.codecache [PROFILE...]`: each profile's file, in a process each."""
    import subprocess

    unknown = [p for p in argv if p not in PROFILES]
    if unknown:
        print(f"usage: python -m executor.codecache [{'|'.join(PROFILES)}]...; not a profile: "
              f"{', '.join(unknown)}", file=sys.stderr)
        return 2
    if len(argv) == 1:
        return 0 if warm(argv[0]) or counts()[1] == 0 else 1
    failed = [p for p in argv or PROFILES
              if subprocess.run([sys.executable, "-m", "executor.codecache", p], check=False).returncode]
    return 1 if failed else 0


if __name__ == "__main__":
    import executor

    executor.forget_working_directory()  # a project's config.py is not Stoker's config package
    from executor import codecache  # the module's own instance, which the product's imports share

    sys.exit(codecache.main(sys.argv[1:]))
