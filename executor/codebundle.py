"""`stoker run`'s start modules found and read from one file (issue 14, bundle).

A re-run's supervisor loads about 140 source modules before its first report, each found by
the path finder (some 375 lookups in `sys.path`'s directories and its packages') and read
from a file of its own (`executor/nodocs.py`'s docstring-free code). The warm step
(`codecachewarm.write_codebundle`) writes their code in one file, `nodoc/run.TAG.codebundle`
under the code cache directory (`run.cpython-311.codebundle`: each interpreter's own, as a
`.pyc` is), and `install()`, called by the entry point right after the early start
(`executor/cli/start.py`: the run is spawned before the file is read), puts a finder that
serves them from it just before the path finder: one file opened, its index read, and
the code of each module read (`os.pread`) and unmarshalled only as it is imported (the whole
file read at once, 1.8 MB, took 1.2-1.4 ms of CPU: `_OpenBundle`). `stoker run`'s imports
take about 4.7 ms less CPU (of 60-odd at load 3: docs/benchmarks.md, bundle). `forget()`
takes the finder off, and closes the file, as the start ends (`runstart.forget_listings`).
A first run's planning child (`executor/cli/launchfirst.py`'s, or for a run not planned
ahead the supervisor's own, `executor/local/planning.py`'s) has the finder from its fork,
and adds a second file, `nodoc/plan.TAG.codebundle` (`install(PLAN)`): the config language's
modules, which only it loads (pystachio, the schema, the loader: 22 modules, 0.2 MB), so that
the supervisor never reads them (docs/benchmarks.md, plancut).

What runs is what Python would run:
- Freshness, as a `.pyc`'s: each module's code keeps its `.pyc` header (the source's mtime
  and size when it was compiled), and the source is `stat`ed as it is imported; a source
  changed since is not served (the path finder loads it: `nodocs` compiles it again).
- Finding, as the path finder would: the file records each directory it found a module in
  (`sys.path`'s entries, each package's) with its mtime, and which top-level names of the
  bundle each entry of `sys.path` holds. `install()` `stat`s each (about 20): one whose
  mtime changed (a file added, removed or renamed in it: what `FileFinder`'s own listing
  cache trusts) serves none of its modules; an entry of this `sys.path` that the file does
  not know, or changed, is listed, and a top-level module held by an entry before its own
  is not served (it would be shadowed; a zip archive the file does not know, or changed, is
  taken to hold every name). A top-level name is served only while `sys.path`
  is the one `install()` saw, a submodule only under its package's own directory (an
  `__path__` changed by a package is looked at as ever).
- Trust, as `nodocs`' files under `nodoc/`: read only when no other user could have
  written it (`nodocs.kept_fd`), and not for a config's own imports. A file damaged
  (cut short, or of other shapes) serves nothing it cannot read, and never raises: one DEBUG
  line names it (its index, or a module's entry or code, found damaged), said by `forget()`'s caller (`install()` runs before the log is set up,
  where a line would go nowhere, and this module imports no `logging`); the planning child's
  (`PLAN`'s) by its parent, from the child's answer (`found_damaged`).
- Memory: a module's loader reads and unmarshals the bundle's code only as it is imported,
  and gives it once (then the source's, as the path finder's loader would), so none of it is
  kept once the module ran, nor by a spec found and not run (a module `executor.deferred` made
  lazy holds its spec for the process's life); a loader holds its file weakly, so that
  `forget()` closes it.
"""
from __future__ import annotations

import marshal
import os
import sys
from _frozen_importlib import ModuleSpec
from _frozen_importlib_external import PathFinder
from _weakref import ref

from executor import nodocs

TYPE_CHECKING = False  # not `typing`'s (see executor/nodocs.py)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import CodeType, ModuleType

# Named for the interpreter, as a `.pyc` is (`sys.implementation.cache_tag`): two Pythons of one
# checkout (a 3.11 and a 3.12 venv over one source tree) each keep their own. Untagged, each
# warm step replaced the other's, whose headers (the magic number) then matched no module: the
# other Python's starts were served none (0 of 99), and read and `stat`ed for nothing.
NAME = f"run.{sys.implementation.cache_tag}.codebundle"  # under the code cache's `nodoc/`
PLAN = f"plan.{sys.implementation.cache_tag}.codebundle"  # the planning child's own modules, beside it
# the files' earlier names, which nothing reads: the warm step removes them
EARLIER_NAMES = ("run.bundle", "run.codebundle", "plan.codebundle")
# name -> (source path, a package?, its .pyc header, where its marshalled code starts in its
# file's code (what follows the file's index: its length in 4 bytes, then it), its length, the file)
_modules: dict[str, tuple[str, bool, bytes, int, int, _OpenBundle]] = {}
_read: set[str] = set()  # the files `install()` read (their names)
_damaged = ""  # a file found damaged (by `install()`, or as a module was looked for or read): given by
# `forget()`, whose caller says it once the log is set up
_path: list[str] = []  # `sys.path` as `install()` saw it
_cwd = ""  # the working directory then, when an entry of it is relative ('': `python -c`'s)
# what reading a damaged file (its index, or a module's entry, of other shapes or values) raises
_DAMAGED = (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError)


class _OpenBundle:
    """A bundle file, open, each module's code read from it as the module is imported, not
    the whole file into memory at once (1.8 MB read into a new buffer took 1.2-1.4 ms of CPU,
    on a first run's path before its planning child's fork); closed once nothing holds it
    (`forget`, and any import under way then). A file replaced since (the warm step renames
    a new one into place) is read as it was opened; one cut short gives short reads, damage."""

    __slots__ = ("__weakref__", "base", "end", "fd", "path")
    _close = staticmethod(os.close)  # (at the interpreter's exit too, when the module's `os` may be gone)

    def __init__(self, path: str, fd: int, base: int, end: int) -> None:
        self.path = path  # (named when found damaged)
        self.fd = fd
        self.base = base  # where the modules' code starts
        self.end = end  # where the file ended as it was opened

    def __del__(self) -> None:
        fd, self.fd = self.fd, -1  # first: its weak references give it until this returns, and os.close
        try:  # lets the GIL go (another thread's loader read the number freed, another file's by then)
            self._close(fd)
        except OSError:  # (never expected: the fd is this object's alone)
            return

    def read(self, start: int, length: int) -> bytes:
        """`length` bytes of the modules' code from `start`; fewer at the file's end (none for
        a place past the end the file had when opened, or a negative length: a damaged
        index's, never allocated, nor given to `os.pread`, which raised OverflowError for one
        past a C ssize_t)."""
        at = self.base + start
        return os.pread(self.fd, length, at) if self.base <= at and 0 <= length and at + length <= self.end else b""


class CodeBundleLoader(nodocs.NoDocLoader):
    """A source module whose code is the bundle's (its source read only for a traceback's lines)."""

    def __init__(self, fullname: str, path: str, where: tuple[int, int], bundle: _OpenBundle) -> None:
        super().__init__(fullname, path)
        self.where: tuple[int, int] | None = where  # its code's start and length in the file's
        self.bundle = ref(bundle)  # weakly: `forget()` closes the file

    def get_code(self, fullname: str) -> CodeType | None:
        """The bundle's code once, read and unmarshalled only now, for the module's import;
        then, or once the file is closed, the source's as it is now, as the path finder's
        loader gives it. A spec found and never run (`executor.deferred`'s modules, made lazy,
        keep theirs) holds no code (unmarshalled as it was found, `ipaddress`' and `fnmatch`'s
        stayed: 0.16 MB); kept once given, the module-level code of each (0.5 MB) stayed in
        memory, and was given again for a source edited since."""
        global _damaged
        where, self.where = self.where, None
        bundle = self.bundle()
        if where is None or bundle is None or bundle.fd < 0:  # given once; the file closed, or being closed
            return super().get_code(fullname)  # (`_OpenBundle.__del__`: as gone)
        code = _code(bundle, *where, self.path)  # (named as here: only code compiled from this path)
        if code is None:
            _damaged = bundle.path  # its code cut short, or of another shape: said too
            return super().get_code(fullname)
        return code


class CodeBundleFinder:
    """Serves a module of the bundle whose source still has the size and mtime it was compiled from."""

    @staticmethod
    def find_spec(fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> ModuleSpec | None:
        entry = _modules.get(fullname)
        if entry is None:
            return None
        global _damaged
        try:
            origin, package, _, start, length, bundle = entry
            if not _served(entry, path):
                return None
        except _DAMAGED:  # a damaged file (its index read, of other shapes): as the path finder finds it,
            _damaged = entry[-1].path  # and said (was: only an index that could not be read; its file is last)
            return None
        directory = os.path.dirname(origin)
        spec = ModuleSpec(fullname, CodeBundleLoader(fullname, origin, (start, length), bundle), origin=origin,
                          is_package=package)
        spec.has_location = True
        if package:
            spec.submodule_search_locations = [directory]
        return spec


def _served(entry: tuple[str, bool, bytes, int, int, _OpenBundle], path: Sequence[str] | None) -> bool:
    """Whether the path finder would find the module `entry` is there, unchanged (see the
    module's docstring)."""
    origin, package, header = entry[:3]
    directory = os.path.dirname(origin)
    home = os.path.dirname(directory) if package else directory
    if path is None:
        if sys.path != _path or _cwd and _working_directory() != _cwd:
            return False
    elif list(path) != [home]:
        return False
    if nodocs._imported_by_config():
        return False
    try:
        stats = os.stat(origin)
    except OSError:
        return False
    return nodocs._header({"mtime": stats.st_mtime, "size": stats.st_size}) == header


def _code(bundle: _OpenBundle, start: int, length: int, origin: str) -> CodeType | None:
    """The code at `start` (`length` bytes) in `bundle`'s, compiled from `origin`; None:
    damaged, or unreadable. (A damaged index's place where another module's code starts gave
    that code, whose header check is its source's own: marshal reads one object and leaves
    the bytes after it; the warm step compiles each from its origin.)"""
    try:
        data = bundle.read(start, length)
        code = marshal.loads(data) if len(data) == length else None
    except (*_DAMAGED, OSError):
        return None
    return code if type(code) is type(_code.__code__) and code.co_filename == origin else None


def names_in(directory: str, names: set[str]) -> set[str]:
    """Which of the top-level `names` a module in `directory` could be found under (a file
    or directory of that name, whatever its suffix); all of them when `directory` is a file
    (a zip archive, which `zipimport` imports from: not listed here)."""
    try:
        return {entry.partition(".")[0] for entry in os.listdir(directory)} & names
    except NotADirectoryError:
        return set(names)
    except OSError:
        return set()


def install(name: str = NAME) -> bool:
    """The finder, before the path finder, serving the modules of the bundle `name` (NAME, or
    PLAN in the planning child, added to the one it has from its fork) that are still where
    the path finder would find them (see the docstring); False without a bundle to trust."""
    global _cwd
    if name in _read:
        return CodeBundleFinder in sys.meta_path
    relative = not all(os.path.isabs(entry) for entry in sys.path)
    if relative and not _working_directory():  # where a relative entry is, unknown: none served
        return False
    _read.add(name)
    served = _trusted(name)
    if not served:
        return False
    for module, entry in served.items():  # a name both files hold keeps the first's
        _modules.setdefault(module, entry)
    if CodeBundleFinder not in sys.meta_path:
        _path[:] = sys.path
        _cwd = _working_directory() if relative else ""
        sys.meta_path.insert(sys.meta_path.index(PathFinder) if PathFinder in sys.meta_path else len(sys.meta_path),
                             CodeBundleFinder)
    return True


def _trusted(name: str) -> dict[str, tuple[str, bool, bytes, int, int, _OpenBundle]]:
    """The modules of the bundle file `name` that this `sys.path` finds where it has them,
    each with the file, open; none when there is no file to trust, or it is damaged."""
    kept = nodocs.kept_fd(os.path.join(nodocs._nodoc, name)) if nodocs.installed() else None
    if kept is None or kept[0] < 0:
        return {}
    fd, end = kept
    try:
        size = int.from_bytes(os.pread(fd, 4, 0), "little")
    except OSError:
        os.close(fd)
        return {}
    bundle = _OpenBundle(os.path.join(nodocs._nodoc, name), fd, 4 + size, end)  # closes the fd when let go
    try:
        if 4 + size > end:  # (pread allocates the length asked first: 4 GiB for a damaged one, a
            raise EOFError  # MemoryError under `ulimit -v` that ended the start)
        index = os.pread(fd, size, 4) if size else b""
        directories, modules = marshal.loads(index)
        changed = {directory for directory, (mtime, _) in directories.items() if _stat_ns(directory) != mtime}
        changed |= _shadowed(directories, changed, modules)
        return {module: (*entry, bundle) for module, entry in modules.items() if os.path.dirname(entry[0]) not in changed}
    except (*_DAMAGED, OSError):  # damaged, or unreadable: every module as the path finder finds it
        global _damaged
        _damaged = os.path.join(nodocs._nodoc, name)
        return {}


def _working_directory() -> str:
    """The working directory; "" once it was removed (Python's path finder then passes over
    a relative entry of `sys.path`: raised out of `find_spec`, the import failed)."""
    try:
        return os.getcwd()
    except OSError:
        return ""


def _stat_ns(directory: str) -> int | None:
    """The mtime of `directory` (ns); None when it is gone."""
    try:
        return os.stat(directory).st_mtime_ns
    except OSError:
        return None


def forget() -> str:
    """The finder taken off and the files closed, as the start's imports are done
    (`runstart.forget_listings`): a later import finds its module as Python does (a loader
    found before, a deferred module's, then compiles its source). Gives the file `install()`
    found damaged, once (its caller, whose log is set up by then, says so: `install()` runs
    before it), else ""."""
    global _damaged
    damaged, _damaged = _damaged, ""
    if CodeBundleFinder in sys.meta_path:  # a new list: an import under way (another thread's) goes on through the old
        sys.meta_path = [finder for finder in sys.meta_path if finder is not CodeBundleFinder]  # (one removed from
        # it, the finder after the one it asks would be skipped: the path finder, and its module not found)
    _modules.clear()
    _read.clear()
    return damaged


def found_damaged(path: str) -> None:
    """`path` found damaged by another process, the planning child (which ends without a
    log): `forget()` gives it too, once, with this process's own."""
    global _damaged
    if path and path not in _damaged.split(", "):
        _damaged = f"{_damaged}, {path}" if _damaged else path


def _shadowed(directories: dict[str, tuple[int, tuple[str, ...]]], changed: set[str],
              modules: dict[str, tuple[str, bool, bytes, int, int]]) -> set[str]:
    """The directories of the top-level modules this `sys.path` would not find where the
    bundle has them: another of that name in an entry before, or none on the path at all."""
    tops = {name for name in modules if "." not in name}
    seen: set[str] = set()
    shadowed = set()
    for entry in sys.path:
        directory = os.path.abspath(entry or os.getcwd())
        known = directories.get(directory)
        held = names_in(directory, tops) if known is None or directory in changed else set(known[1]) & tops
        for name in held - seen:
            origin, package = modules[name][:2]
            if os.path.dirname(os.path.dirname(origin) if package else origin) != directory:
                shadowed.add(os.path.dirname(origin))
        seen |= held
    return shadowed | {os.path.dirname(modules[name][0]) for name in tops - seen}
