"""Modules loaded without their docstrings, from `.pyc` files of their own.

A supervisor holds every module it imported for its whole life, and with them their
docstrings: Stoker's 87 modules of `stoker run` have about 245,000 characters of them (many
with a `→`, so 2 bytes a character), the standard library's and attrs' and pystachio's as
much again. Nothing reads them at run time (no `__doc__` in Stoker, its help texts are
literals), so `install()` has every module imported after it compiled without them:
`stoker run` at N=100 holds about 0.8 MiB less (USS and PSS, docs/benchmarks.md).

- Only docstrings go: each module's, class's and function's first statement when it is a
  string, and any string statement right after it, which would become the docstring (a
  body of nothing else keeps a `pass`). `assert`s stay, and line numbers with
  them (the code is compiled from the source's own syntax tree), so tracebacks name the
  lines they ever did. This is `python -OO` without its other half (asserts removed) and
  without depending on how the interpreter was started (`sys.flags.optimize`).
- Columns go too (`nodoccode.lines_only`): Python 3.11 keeps, for each instruction, the line and
  columns of the source it came from (PEP 657), which only a traceback's `^^^` marks under
  a line use. The code keeps a table of lines alone (one entry for up to 8 instructions of
  a line, as `-X no_debug_ranges` would give, adjacent runs joined): each instruction's
  line is the same, so are tracebacks, `f_lineno`, line events and `dis`, without the
  marks. `stoker run` at N=100 holds 0.14 MiB less (USS, medians of 10 interleaved runs).
- Stoker's own modules (OWN) lose their functions' annotations too (`def f(x: int) -> str`:
  strings under `from __future__ import annotations`, which each function held in a tuple
  for its whole life; only `typing.get_type_hints()` and `inspect` read them, and nothing
  of Stoker's asks them: tests/unit/test_served_assumptions.py): 1,100-odd tuples, `stoker
  run` at N=100 holds 124 KiB less (USS, docs/benchmarks.md, mem10). A class's field annotations stay: attrs reads them as it
  makes the class. Other modules' functions keep theirs: a library may read them.
- The code is kept as Python keeps a module's, named `NAME.TAG.opt-nodoc4.pyc`, with the
  source's mtime and size in its header and the source's mode; a file that does not match
  its source is not used. Its code names the source where it is now, as a `.pyc`'s does (a
  tree copied with its files' mtimes, `cp -a`, still matches: a traceback read the first's). A module of Stoker's installation (its own packages, and the
  virtual environment it runs in) has it beside its `.pyc`, in the same `__pycache__`
  (or under `sys.pycache_prefix`, for every module). Any other (the standard library's,
  a system package's) has it under the code cache directory (STOKER_CODE_CACHE, default
  `executor/__pycache__`), in `nodoc/` and its source's directory (each level made 0755
  less the umask, never open to others as Python's 0777 would be): the interpreter's own
  `__pycache__` directories belong to its package manager (dpkg's, say), which knows no
  file of ours, and root may write there. When there is none yet, the module is compiled
  without docstrings and its file written only where Python would compile it too (no
  `.pyc` it can use: a timestamp one of the source, or a hash-based one) and would write
  a `.pyc` (not under PYTHONDONTWRITEBYTECODE, not in a directory this user cannot write,
  or under one), or where a file of ours no longer matches its source or has an earlier
  tag (EARLIER_TAGS) (an edited dev tree,
  an installation upgraded without the warm step: Python's `.pyc` of the new source would
  otherwise serve it, with its docstrings, at every start until the warm step ran again:
  compiled once, for the modules that changed); otherwise the module loads as ever, from
  its `.pyc`, docstrings included: this only ever saves memory, it never decides what runs,
  a start never compiles what it cannot keep, nor what Python would not compile but what
  a file of ours gone stale held (this compile is twice Python's: seconds, for a fresh
  unpack of the zipapp, which has none). `python -m executor.codecache`, which an
  installer runs, writes the files of every module each command imports.
- A file under `nodoc/` is code that root may run, so it is read only when no other user
  could have chosen it: the code cache directory, every level from `nodoc/` down, and the
  file, a directory (a regular file, never a symlink) of this user's or root's that no one else may write (`owner_only`:
  nor a group but the user's own). Else the module loads as Python loads it, and nothing is
  written there: a tree made before its levels were 0755 (0777 under a umask of 0) is
  ignored so until the warm step moves it aside and writes it again
  (`codecachewarm.rebuild_open_tree`). Each level is looked at once a process (`_closed`). A
  file beside a `.pyc` (Stoker's installation, PYTHONPYCACHEPREFIX) is trusted as the `.pyc`.
- A config (`stoker run`'s, `stoker inspect`'s) is the user's code, run in Stoker's
  process, and may import modules that read their own docstrings: what it imports, and
  what those import, loads as Python loads it (docstrings kept, its `.pyc`). Modules
  Stoker loaded before are shared, without theirs, as under `python -OO`.
- It is a loader for source files (`NoDocLoader`, `importlib`'s own with `get_code`
  replaced) put in place of the path finder's: `sys.path_hooks` gets a `FileFinder`
  that uses it, and the finders already made for `sys.path`'s directories use it from
  then on (their loader list changed in place, so that their directory listings are kept;
  a finder without that list is dropped, and made again at the next import). Modules imported before `install()`
  (the interpreter's own start, the entry point) keep their docstrings, but for Stoker's own
  modules' `__doc__` (the entry point's and this module's: 24 KB), which `install()` lets go
  (`_forget_docs`); their functions' stay, in their code.
- STOKER_CODE_CACHE=off (or any value that is not an absolute path, or a directory another
  user could put files in: `cache_dir`) turns it off, as it
  does the attrs code cache (`executor/codecache.py`), and so does `python -O` or `-OO`
  (PYTHONOPTIMIZE): the code then depends on the level, which our file names do not
  carry, and `-OO` drops docstrings by itself.

Process-wide, imperative by nature: `stoker`'s entry point (`executor/cli/start.py`) calls
`install()` first of all.
"""
from __future__ import annotations

import _imp
import marshal
import os
import stat
import sys

# importlib's own classes, from the frozen module the interpreter started with: `importlib`
# and `importlib.util` would load `warnings`, `contextlib`, `collections` and `functools`
# here, before the early start (executor/cli/launch.py), and with their docstrings
from _frozen_importlib_external import (
    BYTECODE_SUFFIXES,
    EXTENSION_SUFFIXES,
    MAGIC_NUMBER,
    SOURCE_SUFFIXES,
    ExtensionFileLoader,
    FileFinder,
    SourceFileLoader,
    SourcelessFileLoader,
    cache_from_source,
)

TYPE_CHECKING = False  # not `typing`'s: the entry point loads this before anything else
if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import CodeType, FrameType
    from typing import Any

TAG = "nodoc4"  # the files' optimization tag: NAME.cpython-311.opt-nodoc4.pyc (2: lines only; 3: OWN's
# functions without annotations; 4: the compiler's constants tuples kept, equal line tables one, `lines_only`,
# and the stream's values that recur one object each, `nodoccode.dumps`)
EARLIER_TAGS = ("nodoc", "nodoc2", "nodoc3")  # an earlier Stoker's files, which the warm step removes (`codecachewarm`)
OWN = ("executor", "config", "healthcheck")  # Stoker's packages: their functions' annotations go too
CACHE_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "__pycache__")
_TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where `executor` is
CONFIG_NAMESPACE = "__stoker_config__"  # the `__name__` config/loader.py runs a config's code under
_installed = False
_compile_always = False  # even a module whose `.pyc` Python would load: the warm step's (`codecachewarm`)
_elsewhere = CACHE_DIR  # where the files of modules not of Stoker's installation go
_nodoc = os.path.join(CACHE_DIR, "nodoc")  # under it, in their source's directory
_closed: dict[str, bool] = {}  # `_closed_dir`'s answers, each level asked once a process
_own: tuple[str, ...] = ()  # the directories of Stoker's installation (see `install()`)
_OWN_DIRS = tuple(os.path.join(_TOP, package) + os.sep for package in OWN)


class NoDocLoader(SourceFileLoader):
    """A source file's module, its code from NAME.TAG.opt-nodoc4.pyc (see the docstring)."""

    def get_code(self, fullname: str) -> CodeType | None:
        source_path = self.get_filename(fullname)
        if _imported_by_config():  # the user's code: as Python loads it
            return super().get_code(fullname)
        try:
            kept = kept_path(source_path)
            stats = self.path_stats(source_path)
        except (NotImplementedError, OSError):  # no cache for it (sys.implementation), or no source
            return super().get_code(fullname)
        header = _header(stats)
        data = _kept_data(kept) if kept.startswith(_nodoc + os.sep) else _data(self, kept)
        if data is None:  # a file, or a level, another user could have written: as Python loads it
            return super().get_code(fullname)
        code = _unmarshal(data) if data[:16] == header else None
        if code is not None:  # named as the source is now, as Python's `.pyc` loader does (a tree copied with its
            # files, `cp -a`: compiled in the first; typeshed does not list `_fix_co_filename`)
            _imp._fix_co_filename(code, source_path)  # type: ignore[attr-defined]
            return code
        # Python's usable `.pyc` serves a module without a file of ours (not warmed); a stale one of
        # ours (its source edited, or upgraded without the warm step, an earlier tag's too) is compiled again, once
        if not _may_write(kept) or (not _compile_always and not data and _usable_pyc(source_path, header)
                                    and not _earlier_left(source_path, kept)):
            return super().get_code(fullname)
        try:  # only to compile (`executor/nodoccode.py`): a start that compiles nothing never loads it
            from executor.nodoccode import compile_without_docstrings, dumps
        except ImportError:  # itself, compiled as it loads (its names not defined yet): as Python loads it
            return super().get_code(fullname)
        code = compile_without_docstrings(self.get_data(source_path), source_path,
                                          annotations=not source_path.startswith(_OWN_DIRS))
        # with the source's mode, as a .pyc (typeshed does not list this method of SourceFileLoader)
        self._cache_bytecode(source_path, kept, header + dumps(code))  # type: ignore[attr-defined]
        return code

    def set_data(self, path: str, data: Any, *, _mode: int = 0o666) -> None:  # Any: typeshed's Buffer
        """As Python's, each missing directory made 0755 less the umask (Python's are 0777
        less it: under a umask of 0, `nodoc/` open to every user, who could plant a module's
        file there, its header the source's mtime and size, for root's next start). As
        `replacefile.make_dirs`, which is not imported here: its own load comes through here."""
        missing = []
        directory = os.path.dirname(path)
        while directory and not os.path.isdir(directory) and directory != os.path.dirname(directory):
            missing.append(directory)
            directory = os.path.dirname(directory)
        for level in reversed(missing):
            try:
                os.mkdir(level, 0o755)
            except FileExistsError:  # another process's, made meanwhile
                continue
            except OSError:  # as Python's: the file is not written
                return
        super().set_data(path, data, _mode=_mode)


def _data(loader: SourceFileLoader, path: str) -> bytes:
    """The file at `path`, beside Python's `.pyc` (trusted as it is); b"" when unreadable."""
    try:
        return loader.get_data(path)
    except OSError:
        return b""


def _kept_data(path: str) -> bytes | None:
    """The file at `path` under the code cache's `nodoc/` (b"": none yet); None when another
    user could have put it there (`kept_fd`)."""
    kept = kept_fd(path)
    if kept is None or kept[0] < 0:
        return None if kept is None else b""
    fd, size = kept
    try:
        chunks = []  # os.read: no buffered file object (half the time of one, 14 us against 26-50)
        while chunk := os.read(fd, size + 1):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def kept_fd(path: str) -> tuple[int, int] | None:
    """The file at `path` under the code cache's `nodoc/`, open (its fd, for the caller to
    close, and its size; (-1, 0): none yet); None when another user could have put it there
    (see the docstring): a level from `nodoc/` down, or the file, not a directory (a regular
    file) of this user's or root's that no one else may write."""
    if not _closed_dir(os.path.dirname(path)):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return -1, 0
    except OSError:  # a symlink (ELOOP), or unreadable
        return None
    try:
        info = os.fstat(fd)
        trusted = stat.S_ISREG(info.st_mode) and owner_only(info, path)
    except OSError:
        trusted = False
    if trusted:
        return fd, info.st_size
    os.close(fd)
    return None


def _closed_dir(directory: str) -> bool:
    """Whether `directory`, `nodoc/` or a level below it, and each level between, and the
    code cache directory above `nodoc/` (the package's `__pycache__` by default), is a
    directory of this user's or root's that no one else may write (`owner_only`), once a
    process (a missing one is made by this user, 0755: `set_data`)."""
    known = _closed.get(directory)
    if known is not None:
        return known
    above = _elsewhere if directory == _nodoc else os.path.dirname(directory)
    if directory != _elsewhere and not _closed_dir(above):  # (the cache directory: itself only)
        verdict = False
    else:
        try:
            info = os.lstat(directory)
        except FileNotFoundError:
            return True
        except OSError:
            info = None
        verdict = info is not None and stat.S_ISDIR(info.st_mode) and owner_only(info, directory)
    _closed[directory] = verdict
    return verdict


def owner_only(info: os.stat_result, path: str) -> bool:
    """Whether the file `info` is (at `path`) is this user's or root's and no other user may
    write it: neither others, nor a group but the user's own (`replacefile.writable_by_others`,
    asked only of a file its group may write)."""
    if info.st_uid not in (os.geteuid(), 0) or info.st_mode & stat.S_IWOTH:
        return False
    if not info.st_mode & stat.S_IWGRP:
        return True
    from executor.host import replacefile  # standard library only; loaded beside its .pyc

    return not replacefile.writable_by_others(info, os.getegid(), path)


def _imported_by_config() -> bool:
    """Whether a config's code is importing the module, itself or through what it imports
    (a frame of the config's namespace on the stack, `config/loader.py`'s `_Run`)."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        if frame.f_globals.get("__name__") == CONFIG_NAMESPACE:
            return True
        frame = frame.f_back
    return False


def kept_path(source_path: str) -> str:
    """Where the file of the module at `source_path` is (see the docstring)."""
    beside = cache_from_source(source_path, optimization=TAG)
    source_dir = os.path.dirname(os.path.abspath(source_path))
    if sys.pycache_prefix or any(source_dir == own or source_dir.startswith(own + os.sep) for own in _own):
        return beside
    return os.path.join(_nodoc, source_dir.lstrip(os.sep), os.path.basename(beside))


def cache_dir(environ: Mapping[str, str] = os.environ) -> str | None:
    """The code cache directory: STOKER_CODE_CACHE, an absolute directory only this user
    (and root) may change, or the package's `__pycache__`; None when it says `off` (or is
    not an absolute path, or is not such a directory: `_only_ours`)."""
    setting = environ.get("STOKER_CODE_CACHE")
    if not setting:
        return CACHE_DIR
    setting = setting.rstrip(os.sep) or os.sep  # `link/`: lstat would follow it (no symlink: `_closed_dir`)
    return setting if os.path.isabs(setting) and _only_ours(setting) else None


def _only_ours(directory: str) -> bool:
    """Whether no other user can put what they like in `directory`: no level of its path
    theirs or open to them (`replacefile.trusted_path`, as for the plan cache), and the
    directory itself (or, missing, the one it would be made in) not open to their writes,
    sticky or not: there they could plant a symlink under a cache file's name (to a file of
    root's whose content they write, a task's log), or `nodoc/` before us, and root's next
    start would run their code. Missing in a sticky directory others may write (/tmp, and
    after each reboot), it is made now, by this user (0755 less the umask), and asked again:
    there no one else can rename it or what is in it; made first by another user, it is
    theirs, and not ours (else it stayed missing, and the cache off, for good)."""
    from executor.host import replacefile  # standard library only; when the variable is set

    if not replacefile.trusted_path(directory):
        return False
    level = directory
    while True:
        try:
            info = os.stat(level)
        except FileNotFoundError:
            level = os.path.dirname(level)
            continue
        except OSError:  # not a directory: nothing is read there, nor written
            return True
        if level == directory or not info.st_mode & stat.S_ISVTX:
            return not replacefile.writable_by_others(info, os.getegid(), level)
        try:
            replacefile.make_dirs(directory, 0o755)
        except OSError:  # not ours to make (a file of that name): nothing is written there
            return False
        return _only_ours(directory)


def _header(stats: Mapping[str, float]) -> bytes:
    """A timestamp `.pyc` header for a source of these stats (what py_compile writes)."""
    return (MAGIC_NUMBER + (0).to_bytes(4, "little") + (int(stats["mtime"]) & 0xFFFFFFFF).to_bytes(4, "little")
            + (int(stats.get("size", 0)) & 0xFFFFFFFF).to_bytes(4, "little"))


def _unmarshal(data: bytes) -> CodeType | None:
    """The code a file of ours holds after its header; None: damaged (compiled again)."""
    try:
        code = marshal.loads(memoryview(data)[16:])
    except (EOFError, ValueError, TypeError):
        return None
    return code if type(code) is type(_unmarshal.__code__) else None


def _earlier_left(source_path: str, kept: str) -> bool:
    """Whether an earlier Stoker's file of the module (EARLIER_TAGS) is where `kept` would be:
    ours gone stale, in an installation upgraded without the warm step."""
    directory = os.path.dirname(kept)
    return any(os.path.exists(os.path.join(directory, os.path.basename(cache_from_source(source_path, optimization=tag))))
               for tag in EARLIER_TAGS)


def _usable_pyc(source_path: str, header: bytes) -> bool:
    """Whether Python would load the source's own `.pyc` without compiling: a timestamp one
    of this source, or a hash-based one (PEP 552: what a zipapp's fresh unpack has)."""
    try:
        with open(cache_from_source(source_path), "rb") as file:
            data = file.read(16)
    except OSError:
        return False
    return data == header or (data[:4] == MAGIC_NUMBER and bool(data[4] & 1))


def _may_write(path: str) -> bool:
    """Whether Python would write a `.pyc` at `path`: bytecode writing on, and its
    directory (or, when it does not exist yet, the one it would be made in) writable."""
    if sys.dont_write_bytecode:
        return False
    directory = os.path.dirname(path)
    while not os.path.isdir(directory) and os.path.dirname(directory) != directory:
        directory = os.path.dirname(directory)  # the directories missing are made in it
    return os.access(directory, os.W_OK)


def install(environ: Mapping[str, str] = os.environ) -> bool:
    """Every source module imported from now on loads through `NoDocLoader` (only the
    first call installs); False when STOKER_CODE_CACHE turns it off."""
    global _installed, _elsewhere, _nodoc, _own
    if _installed:
        return True
    elsewhere = cache_dir(environ)
    if elsewhere is None or sys.flags.optimize:  # -O, -OO: Python's own `.opt-N.pyc` (one file
        return False  # of ours for every level would serve asserts removed to a plain run)
    _elsewhere, _nodoc = elsewhere, os.path.join(elsewhere, "nodoc")
    _own = tuple(os.path.join(_TOP, package) for package in ("executor", "config", "healthcheck"))
    if sys.prefix != sys.base_prefix:  # a virtual environment: the installation's own
        _own += (os.path.abspath(sys.prefix),)
    hook = FileFinder.path_hook((ExtensionFileLoader, EXTENSION_SUFFIXES), (NoDocLoader, SOURCE_SUFFIXES),
                                (SourcelessFileLoader, BYTECODE_SUFFIXES))
    at = next((i for i, h in enumerate(sys.path_hooks) if "FileFinder" in getattr(h, "__qualname__", "")),
              len(sys.path_hooks))
    sys.path_hooks.insert(at, hook)
    for entry, finder in list(sys.path_importer_cache.items()):
        if type(finder) is not FileFinder:
            continue
        loaders = getattr(finder, "_loaders", None)  # (suffix, loader) pairs, since 3.3
        if isinstance(loaders, list):  # its directory listing kept: each is 0.1-0.5 ms to read again
            loaders[:] = [(suffix, NoDocLoader if loader is SourceFileLoader else loader)
                          for suffix, loader in loaders]
        else:  # made again, with the hook, at the next import
            del sys.path_importer_cache[entry]
    _installed = True
    _forget_docs()
    return True


def _forget_docs() -> None:
    """The `__doc__` of Stoker's own modules imported before `install()` let go (see the docstring)."""
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] in ("executor", "config", "healthcheck") and isinstance(module.__doc__, str):
            module.__doc__ = None


def installed() -> bool:
    return _installed
