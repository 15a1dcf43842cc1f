"""attrs' generated methods, compiled once and kept like `.pyc` files.

attrs writes the source of each class's `__init__`, `__repr__`, `__eq__` and `__hash__`
and compiles it when the class is created, at import: for the 88 classes `stoker run`
creates before its first fork, about a quarter of its import time (0.5 ms a class). The
code depends only on that source, so it can be cached as Python caches a module's
bytecode: `install()` wraps attrs' compile step so that the code comes from
`executor/__pycache__/attrs-PROFILE.TAG.bin` when the same source was compiled before,
and `save()` writes the file again when something had to be compiled.

- The key is the class's generated file name (`<attrs generated methods MODULE.CLASS>`), and
  under it up to KEPT sources, the last used first (served or compiled: the least recently
  used goes): the cached source must equal the new source exactly, or the code is compiled
  as without the cache. Two classes of one module and name (made by a function called with
  other fields, an edited class) share a file name, since attrs' "-1" suffix came from the
  `linecache` step served below: each keeps its own entry, so neither is compiled, nor the
  file written, at every start. The one number that changes from process to process (the
  class's own term in `__hash__`, attrs' `hash()` of that file name, which string hashing
  randomizes) is left out of the comparison of a script (mode `exec`; an annotation's,
  `compileserved`'s mode `eval`, is compared whole): the cached code keeps the number it was
  compiled with, and a class's instances still hash alike and apart from another class's.
  A served source is not kept once served, only its `hash()` (this process's: string hashing
  is randomized, so it means nothing in another): the sources of every class a supervisor
  made, held for its whole life for a `save()` that seldom writes, were 0.17 MiB of its USS
  (130 KB of attrs' source text and each class's script code). So a file written again puts
  a source served first when it still holds it (`_served_first`, by that hash: a clash
  would only reorder); one another process dropped from the file meanwhile is compiled
  again at the next start, as any class the file lacks.
- The file names the Python build (`sys.version`): another build ignores it. The code
  depends on nothing but the source, so attrs' version is not part of the key (asking
  attrs for it would load `importlib.metadata`, 50 modules), and is checked in its first
  line before anything is unmarshalled. An unreadable, truncated or damaged file, one of
  another shape, or anything but a regular file (a directory, a FIFO: never waited for) is
  ignored too, with a DEBUG line saying why: the cache only ever saves compiling, it never
  decides what runs, and a start compiles and writes it again.
- The code keeps each instruction's line and not its columns (`nodoccode.lines_only`, as
  Stoker's modules are loaded): with no source line to show, a traceback had no use for
  them. 413 generated methods of a supervisor: 60 → 16 KiB of location tables. The files
  of an earlier FORMAT (1: columns kept; 2: one source a name, no header) are compiled again.
- attrs' own classes (`Attribute`, `Factory`, ...), which its package makes as it loads, and
  the annotations `typing` compiles for its `_Attributes`, are served from the file too:
  `install()` imports attrs with their `compile` served (`executor/compileserved.py`), so
  that a command never calls the builtin `compile()`, whose first call makes the compiler's
  119 syntax-tree classes (0.2 MiB of every supervisor).
- attrs' other steps that `install()` serves with its compile step, which make smaller what
  attrs keeps of each class for its whole life (its source in `linecache`, a tuple class of
  its fields, its methods' globals and docstrings, its annotations), are
  `executor/attrssteps.py`'s.
- One file per PROFILE (`run`, `executor`, `observe`, `cli`), so that a command loads the
  code of the classes it creates and little else. `save()` writes nothing when the
  interpreter is told not to write bytecode (PYTHONDONTWRITEBYTECODE) or the directory is
  not writable, as Python does for `.pyc` files (a DEBUG line says why; the directory and
  each missing level above it are made, 0755 less the umask); the file is written whole (mode 0644,
  less the umask: never writable by others) under a temporary name of its own, created anew (`O_EXCL`: never
  through a symlink, never another process's, in another pid namespace too) and renamed
  into place, so a reader sees the old one or the new one. Two processes that write it at
  once take turns (`writing`: an `flock` on `attrs-PROFILE.TAG.lock`), each merging into
  what the other wrote: neither drops the other's classes. A turn is waited for at most
  LOCK_WAIT_SECS (`executor/host/turnlock.py`): a holder stopped as it held it delays a
  command's end by that, and what the command compiled is compiled again by a next one.
- The files hold code that runs, as `.pyc` files do, and are trusted as they are: whoever
  may write the package's `__pycache__` may change Stoker anyway. A file owned by a user
  other than the one running Stoker, or root (an installer's), one anyone may write, or one
  past MAX_BYTES (never read whole) is ignored and replaced. STOKER_CODE_CACHE moves
  them to another absolute directory, or turns the cache off (`off`, or anything but an
  absolute path): attrs compiles as ever. So it does when that directory is one another
  user could put files in (`nodocs.cache_dir`: writable by others, sticky or not, or on a
  path they could redirect), where they could plant a symlink under the file's name, to a
  file of root's whose content they write (a task's log), and root would run their code.
  So it does when its compile step is not the one this module knows (its name and
  parameters are checked).

Process-wide, imperative by nature: `stoker`'s entry point calls `install()` before
anything defines an attrs class and `save()` before the process ends. `python -m
executor.codecache` writes every profile's file ahead of time (as `compileall` does for
`.pyc` files: for an installation its users cannot write to, run it as the installer).
"""
from __future__ import annotations

import marshal
import os
import re
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from types import CodeType
from typing import Any, TypeGuard

from executor import attrssteps, compileserved, nodocs

FORMAT = 3  # 2: code with lines only; 3: a header, then each file name's sources
HEADER = f"stoker attrs code {FORMAT} {sys.version!r}\n".encode()  # checked before any unmarshal
# What each profile's command imports before it starts its work: `codecachewarm.warm()` compiles these
# (`run`'s planning: a new config's, in the child that plans it ahead). `plan`: what that
# child loads as it plans (the config language's classes), a file the child adds to `run`'s
# (`also`, `executor/cli/launchfirst.py`; its warm step writes those modules' bundle too,
# `codecachewarm._planned`), so that the supervisor never holds them: without it
# each first run's child compiled their methods again (it never saves), 1.7-12 ms on the
# path to its first process. (The supervisor's own planning child adds it too: `planning._plan_bundle`.)
START_MODULES = {
    "run": ("executor.cli.main", "executor.local.run", "executor.local.planning"),
    "executor": ("executor.cli.main", "executor.mesos.process", "executor.mesos.transport"),
    "observe": ("executor.cli.main", "executor.observe.server", "executor.observe.reader"),
    "cli": ("executor.cli.main",),
    "plan": ("config.loader", "config.bind", "config.purity"),
}
# And what they load after their first report (importcut), for the warm step too: a class the
# file lacks is compiled where it is first made, and its file written again at the command's
# exit; an installation its users cannot write to compiles it at every one. The kill's machine
# (`executor.task.kill`, with a task's first kill request: every task is stopped) and a plan's
# `announce` (`config.announcer`, decoded with a kept plan that holds one); a config's ordering
# problems (`config.orderproblems`: its planning child reports them, made at the first). The
# executor's TLS (`executor.mesos.agenttls`, SSL on: ~1.5 ms a start; a plain one: 4 KB of file).
LATER_MODULES = {
    "run": ("executor.task.kill", "config.announcer"),
    "plan": ("config.orderproblems",),
    "executor": ("executor.task.kill", "executor.mesos.agenttls"),
}
PROFILES = tuple(START_MODULES)
# Packages every module of which `codecachewarm.warm()` also writes without docstrings (`executor/nodocs.py`:
# a start compiles none that has a `.pyc`), for the modules loaded after the start.
NODOC_PACKAGES = ("executor", "config", "healthcheck", "pystachio")
CACHE_DIR = Path(nodocs.CACHE_DIR)
MAX_ENTRIES = 1000  # a file past this many names keeps only what the writing process compiled
MAX_BYTES = 64 << 20  # a larger file is not one this module wrote (MAX_ENTRIES names, KEPT sources each)
LOCK_WAIT_SECS = 5.0  # a writer's turn takes milliseconds: one held longer is not let go
KEPT = 4  # sources kept a file name (classes of the same name, made by a function, or edited)
_HASH_TERM = re.compile(r"(hash\(\(\s*)-?\d+")


class _Cache:
    """One process's cache: what it loaded, what it compiled since, where it writes."""

    def __init__(self, path: Path, loaded: dict[str, tuple[tuple[str, Any], ...]]) -> None:
        self.path = path
        self.loaded = loaded  # file name → ((source as compared, code), ...), each taken when used
        self.fresh: list[tuple[str, str, Any]] = []  # (file name, source, code) compiled by this process
        self.served: list[tuple[str, int]] = []  # (file name, hash of the source) served from the file
        self.hits = 0
        self.compiled = 0  # and saved

    def code_for(self, script: str, filename: str, mode: str = "exec", flags: int | None = None) -> Any:
        """The code of `script`: served, or compiled (with this module's `__future__`
        features, or else with `flags`' alone) and kept for `save()`."""
        # an attrs script without its `hash((N`; another mode's source whole (`compileserved`:
        # typing's annotations as strings, one a name, where no other may serve its code)
        source = _HASH_TERM.sub(r"\1#", script) if mode == "exec" else script
        key = filename if mode == "exec" else f"{filename} ({mode} {flags}) {source}"
        kept = self.loaded.get(key, ())
        for index, (cached, code) in enumerate(kept):
            if cached == source:
                self.loaded[key] = kept[:index] + kept[index + 1:]
                self.served.append((key, hash(cached)))  # not the source (see the docstring)
                self.hits += 1
                return code
        from executor.nodoccode import lines_only  # only to compile: a start served whole never loads it

        compiled = compile(script, filename, mode) if flags is None else compile(script, filename, mode, flags, True)
        code = lines_only(compiled)
        self.fresh.append((key, source, code))
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
    path = directory / f"attrs-{profile}.{sys.implementation.cache_tag}.bin"
    cache = _Cache(path, _read(path))
    with compileserved.served(cache.code_for):  # attrs' own classes, as it loads
        from attr import _make

    if not attrssteps.serve(_make, cache.code_for):
        return False
    _cache = cache
    return True


def also(profile: str, environ: Mapping[str, str] = os.environ) -> None:
    """Serve `profile`'s classes too, from its file, in this process, whose cache another
    profile installed (a name both files hold keeps the installed one's). For the child that
    plans a first run (`plan`): its parent never reads those."""
    cache, directory = _cache, cache_dir(environ)
    if cache is None or directory is None or profile not in PROFILES:
        return
    for filename, kept in _read(directory / f"attrs-{profile}.{sys.implementation.cache_tag}.bin").items():
        cache.loaded.setdefault(filename, kept)


def _read(path: Path) -> dict[str, tuple[tuple[str, Any], ...]]:
    """The file's entries; none when it is not one this build wrote as this module does (see
    the docstring), with a DEBUG line saying why, unless it is only missing. (marshal raises
    SystemError, too, for some damaged code objects.)"""
    try:
        data = _own_bytes(path)
        entries = marshal.loads(data[len(HEADER):]) if data.startswith(HEADER) else None
    except (OSError, EOFError, ValueError, TypeError, SystemError) as exc:
        return _ignored(path, str(exc)) if not isinstance(exc, FileNotFoundError) else {}
    if not _well_formed(entries):
        return _ignored(path, f"not this build's FORMAT {FORMAT} file")
    return entries


def _own_bytes(path: Path) -> bytes:
    """The bytes of `path`, a regular file of this user's or root's that not anyone may write,
    of at most MAX_BYTES (never waits: a FIFO; never reads a huge file whole)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    found = os.fstat(fd)  # before `fdopen`, which refuses a directory as "Is a directory: FD"
    if not stat.S_ISREG(found.st_mode):
        os.close(fd)
        raise ValueError("not a regular file")
    with os.fdopen(fd, "rb") as file:
        if found.st_uid not in (os.geteuid(), 0):
            raise ValueError(f"owned by uid {found.st_uid}")
        if found.st_mode & stat.S_IWOTH:
            raise ValueError(f"writable by anyone (mode {stat.S_IMODE(found.st_mode):o})")
        if found.st_size > MAX_BYTES:  # before any read: MAX_BYTES + 1 asked at once (`ulimit -v`)
            raise ValueError(f"larger than {MAX_BYTES} bytes")
        # its size and one byte more, then (the file grew since the fstat; /proc's say 0) the
        # rest a MiB at a time, bounded: a read of MAX_BYTES + 1 at once took that much address
        # space (a MemoryError, a start's traceback, under an address-space limit: `ulimit -v`)
        data = file.read(found.st_size + 1)
        while found.st_size < len(data) <= MAX_BYTES and (more := file.read(min(1 << 20, MAX_BYTES + 1 - len(data)))):
            data += more
        if len(data) > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES} bytes")
        return data


def _well_formed(entries: object) -> TypeGuard[dict[str, tuple[tuple[str, Any], ...]]]:
    """A dict of file name → non-empty tuple of (source, code) pairs."""
    return isinstance(entries, dict) and all(
        isinstance(name, str) and isinstance(kept, tuple) and kept and all(
            isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)
            and isinstance(pair[1], CodeType) for pair in kept)
        for name, kept in entries.items())


def _ignored(path: Path, reason: str) -> dict[str, tuple[tuple[str, Any], ...]]:
    import logging

    logging.getLogger(__name__).debug("code cache %s ignored: %s", path, reason)
    return {}


def save() -> bool:
    """Writes the profile's file again when this process compiled something the file does
    not have (merged into what the file holds now); True when it wrote. Not when no memory
    could be had for it (a MemoryError: the file, read and written whole, under an
    address-space limit at the command's exit, after its task ended): what this process
    compiled is compiled again by a next one, as when it may not write (was: a traceback,
    `executor: crashed`, exit 1, after a task that ended KILLED). Nor when the writer,
    imported here at the end only, does not load: after an upgrade in place the new
    version's file (was: a traceback at the exit of a task that ended as it should)."""
    cache = _cache
    if cache is None or not cache.fresh or sys.dont_write_bytecode:
        return False
    try:
        from executor.codecachewrite import merged, served_first, write, writing  # at the end only
    except (ImportError, SyntaxError):  # an upgrade's file (no memory: the host's, raised)
        return False
    try:
        with writing(cache.path) as turn:
            if not turn:  # what this process compiled is compiled again by a next one
                return False
            entries = _read(cache.path)
            # nothing new: another process wrote it already, or a class was made twice alike
            wrote = merged(served_first(entries, cache.served), cache.fresh)
            if wrote and len(entries) > MAX_ENTRIES:
                entries = {}
                merged(entries, cache.fresh)
            if wrote and not write(cache.path, entries):
                return False
    except MemoryError:  # `write` removed its temporary file; `writing` let the lock go
        return False
    cache.compiled += len(cache.fresh)
    cache.fresh.clear()
    return wrote


def counts() -> tuple[int, int]:
    """(classes served from the file, classes compiled) in this process so far."""
    cache = _cache
    return (0, 0) if cache is None else (cache.hits, cache.compiled + len(cache.fresh))


if __name__ == "__main__":
    import executor

    executor.forget_working_directory()  # a project's config.py is not Stoker's config package

    from executor import codecachewarm

    executor.leave(codecachewarm.main(sys.argv[1:]))  # sys.exit, but under -i or PYTHONINSPECT
