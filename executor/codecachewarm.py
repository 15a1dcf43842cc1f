"""`python -m executor.codecache [PROFILE...]`: each profile's code cache file written ahead
of time, as `compileall` does for `.pyc` files (for an installation its users cannot write
to, run it as the installer), with the modules' code without docstrings
(`executor/nodocs.py`). The cache itself, and its file's rules: `executor/codecache.py`. Each
module's files of an earlier Stoker's tags (`nodocs.EARLIER_TAGS`) go where they are this
installation's alone (`_remove_earlier`): an upgrade left them for good.

A `nodoc/` tree with a level or file another user could have written (made before its levels
were 0755, under a umask of 0: Python's 0777; `nodocs._kept_data` reads nothing there, so
those modules load with their docstrings at every start) is moved aside, removed and written
again (`rebuild_open_tree`): never read, never chmod-ed into trust (what was planted while it
was open would stay)."""
from __future__ import annotations

import contextlib
import importlib
import marshal
import os
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

from executor import codebundle, codecache, codecachewrite, compileserved, deferred, nodocs


def warm(profile: str) -> bool:
    """Compiles what `profile`'s command imports at start (and after its first report:
    `codecache.LATER_MODULES`) and writes its file, whatever PYTHONDONTWRITEBYTECODE says
    (it was asked for), and each of those modules' code without docstrings
    (`executor/nodocs.py`), and Python's `.pyc` of those of Stoker's installation
    (`_write`); True when it wrote the file. The file then
    holds only what this start used: each name's other sources (an older Stoker's shapes),
    which a command would hold unused for its whole life, are gone (`_used`). The modules the
    entry point defers are deferred first (`executor/deferred.py`), as a command has them.
    Call it in a fresh process: a class created before `install()` is not seen."""
    deferred.defer()
    if not codecache.install(profile):
        return False
    sys.dont_write_bytecode = False
    nodocs.install()
    for module in codecache.START_MODULES[profile] + codecache.LATER_MODULES.get(profile, ()):
        importlib.import_module(module)
    write_loaded()  # those this process loaded before the loader was in place
    write_packages(codecache.NODOC_PACKAGES)  # and those a command loads when it needs them
    if profile == "run":
        write_codebundle(_started())
    elif profile == "plan":
        write_codebundle(_planned(), codebundle.PLAN)
    cache = codecache._cache
    assert cache is not None  # (installed above)
    with codecachewrite.writing(cache.path) as turn:  # a start's `save()` meanwhile
        if not turn:
            print(f"stoker: {cache.path}: not written: another process has held its lock for "
                  f"{codecache.LOCK_WAIT_SECS:g} s (stopped?)", file=sys.stderr)
            return False
        entries = codecache._read(cache.path)
        used = _used(entries, cache.served)
        codecachewrite.merged(used, cache.fresh)
        cache.compiled += len(cache.fresh)
        cache.fresh.clear()
        return used != entries and codecachewrite.write(cache.path, used)


def _started() -> list[str]:
    """The modules `stoker run`'s supervisor loads by its first report, as a fresh
    interpreter lists them: its entry point's steps (`executor.cli.start`) and what it imports
    (`START_MODULES`, but its planning child's `executor.local.planning`), not the modules it
    defers and does not load (`executor.deferred`). (The early start's few are in it too: a
    re-run loads them before the bundle's finder is in, a first run's parent its step 4 from
    it, after its planning child's fork.) The modules are deferred before `codecache` is
    imported, as the entry point defers them: it imports `pathlib`, and with it `fnmatch`,
    `urllib.parse` and `ipaddress`, which were bundled (0.1 MB of the file) and never
    imported."""
    statement = ("import sys; from executor import nodocs; nodocs.install(); before = set(sys.modules); "
                 "from executor import deferred; deferred.defer(); from executor import codecache; "
                 "codecache.install('run'); import executor.cli.main, executor.local.run; "
                 "print(*(set(sys.modules) - before - deferred._pending))")
    return subprocess.run([sys.executable, "-P", "-c", statement], check=True, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL).stdout.split()


def _planned() -> list[str]:
    """The modules a first run's planning child loads itself, as a fresh interpreter lists
    them: those its plan loads (`START_MODULES["plan"]`) that `stoker run` has not loaded
    before it forks the child (`executor.local.planning` and what it imports:
    `launchfirst.fork_ahead`), nor `json`, which the child defers (a JSON config's reads it
    from the run's bundle, whose supervisor imports it)."""
    statement = ("import sys; from executor import nodocs; nodocs.install(); "
                 "from executor import codecache, deferred; deferred.defer(); "
                 "codecache.install('run'); import json, executor.local.planning; before = set(sys.modules); "
                 f"import {', '.join(codecache.START_MODULES['plan'])}; "
                 "print(*(set(sys.modules) - before - deferred._pending))")
    return subprocess.run([sys.executable, "-P", "-c", statement], check=True, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL).stdout.split()


def write_codebundle(names: list[str], bundle: str = codebundle.NAME) -> int:
    """`executor/codebundle.py`'s file `bundle`: the docstring-free code of the modules `names`
    that have a file of it matching their source (this process wrote them), and the
    directories that decide where each is found, with their mtimes; how many modules it holds."""
    modules, codes, at = {}, [], 0
    for name in sorted(names):
        spec = getattr(sys.modules.get(name), "__spec__", None)
        origin = getattr(spec, "origin", None)
        if spec is None or not isinstance(origin, str) or not origin.endswith(".py"):
            continue
        try:
            with open(nodocs.kept_path(origin), "rb") as file:
                data = file.read()
            stats = os.stat(origin)
        except OSError:
            continue
        if data[:16] == nodocs._header({"mtime": stats.st_mtime, "size": stats.st_size}):
            modules[name] = (origin, spec.submodule_search_locations is not None, data[:16], at, len(data) - 16)
            codes.append(data[16:])
            at += len(data) - 16
    index = marshal.dumps((_directories(modules), modules))
    path = os.path.join(nodocs._nodoc, bundle)
    nodocs.NoDocLoader(bundle, path).set_data(path, len(index).to_bytes(4, "little") + index + b"".join(codes))
    _remove_earlier_bundles()
    return len(modules)


def _remove_earlier_bundles() -> None:
    """The bundle's files of its earlier names (`codebundle.EARLIER_NAMES`: `run.bundle`, the
    steps' of 09:24-09:36 on 2 December; `run.codebundle` and `plan.codebundle`, without the
    interpreter's tag, until 2 December's sixth session) removed from `nodoc/` where it is this installation's
    alone, as `_remove_earlier` decides: no start reads them (1.7 MB). Each unlinked: a
    symlink goes, never what it names; no other name, no other directory."""
    if nodocs._elsewhere != nodocs.CACHE_DIR or not nodocs._closed_dir(nodocs._nodoc):
        return
    for name in codebundle.EARLIER_NAMES:
        with contextlib.suppress(OSError):  # none (every install but those), or not this user's to remove
            os.unlink(os.path.join(nodocs._nodoc, name))


def _directories(modules: dict[str, tuple[str, bool, bytes, int, int]]) -> dict[str, tuple[int, tuple[str, ...]]]:
    """Each directory that decides where a module of `modules` is found (`sys.path`'s, and
    each one's own), with its mtime and which of their top-level names it holds."""
    tops = {name for name in modules if "." not in name}
    places = {os.path.abspath(entry or os.getcwd()) for entry in sys.path}
    places |= {os.path.dirname(origin) for origin, *_ in modules.values()}
    directories = {}
    for directory in places:
        with contextlib.suppress(OSError):
            directories[directory] = (os.stat(directory).st_mtime_ns, tuple(_held(directory, tops)))
    return directories


def _held(place: str, tops: set[str]) -> set[str]:
    """Which of `tops` a `sys.path` entry holds: a directory's (`codebundle.names_in`), or a zip
    archive's, by the names in it (a file that is not one holds none: `zipimport` refuses it)."""
    if not os.path.isfile(place):
        return codebundle.names_in(place, tops)
    try:
        with zipfile.ZipFile(place) as archive:
            return {name.partition("/")[0].partition(".")[0] for name in archive.namelist()} & tops
    except (OSError, zipfile.BadZipFile):
        return set()


def _used(entries: dict[str, tuple[tuple[str, Any], ...]],
          served: list[tuple[str, int]]) -> dict[str, tuple[tuple[str, Any], ...]]:
    """The sources of `entries` this process was served (by their hash), each name's in its order."""
    hashes: dict[str, set[int]] = {}
    for filename, source_hash in served:
        hashes.setdefault(filename, set()).add(source_hash)
    used = {name: tuple(pair for pair in kept if hash(pair[0]) in hashes.get(name, ())) for name, kept in entries.items()}
    return {name: kept for name, kept in used.items() if kept}


def write_loaded() -> int:
    """Writes the file of each module this process loaded from a source file whose file is
    missing or out of date (where it may: `nodocs.NoDocLoader`); how many modules it looked at.
    For `python -m executor.codecache`, which loaded some of them before `install()`."""
    if not nodocs.installed():  # off, or -O: see `nodocs.install()`
        return 0
    nodocs._compile_always = True  # and from now on in this process (the installer's)
    looked = 0
    for module in list(sys.modules.values()):
        spec = getattr(module, "__spec__", None)
        if spec is not None and isinstance(_unwrapped(spec.loader), nodocs.SourceFileLoader) and spec.has_location:
            looked += _write(spec.name, spec.origin)
    return looked


def _unwrapped(loader: Any) -> Any:
    """The loader under Stoker's wrappers of one (`compileserved._SeededLoader`, attrs'
    `_make`; `deferred._Then`, its `_compat`), which run its module's code with it: those
    modules load through the loader beneath, and were left without their files (attrs'
    largest module then loaded with its docstrings at every start)."""
    while isinstance(loader, (compileserved._SeededLoader, deferred._Then)):
        loader = loader.loader
    return loader


def write_packages(names: Iterable[str]) -> int:
    """Writes the file of every module of these packages (each imported, its modules'
    sources read, not run), as `write_loaded()`; how many it looked at. For the installer:
    a command loads some only when it needs them (a first run's config, an Aurora task)."""
    if not nodocs.installed():
        return 0
    nodocs._compile_always = True
    looked = 0
    for name in names:
        try:
            package = importlib.import_module(name)
        except ImportError:  # an extra not installed
            continue
        for top in getattr(package, "__path__", ()):
            for directory, subdirectories, files in os.walk(top):
                subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
                looked += sum(_write(os.path.join(directory, f), os.path.join(directory, f))
                              for f in sorted(files) if f.endswith(".py"))
    return looked


def _write(name: str, source_path: str) -> int:
    """1 when the file of the module at `source_path` is there or was written (its import would
    have found any error), else 0. A module of Stoker's installation (its file beside its
    `.pyc`) gets its `.pyc` too, when missing or out of date, whatever PYTHONDONTWRITEBYTECODE
    says (`warm()` lets this process write bytecode): the entry point loads its first modules
    (`executor`, `executor.cli.start`, `executor.nodocs`, ...) before the loader is in place,
    from their `.pyc` alone. Without one (a checkout only ever run under
    PYTHONDONTWRITEBYTECODE=1, or a module edited since) each start compiled them, and the
    builtin `compile()`'s first call made the compiler's syntax-tree classes
    (`executor/compileserved.py`: 0.2 MiB of every supervisor)."""
    try:
        nodocs.NoDocLoader(name, source_path).get_code(name)
        _remove_earlier(source_path)
        if not nodocs.kept_path(source_path).startswith(nodocs._nodoc + os.sep):  # not the interpreter's own
            nodocs.SourceFileLoader(name, source_path).get_code(name)  # its `.pyc`: read, or compiled and written
    except (ImportError, OSError, SyntaxError, ValueError):
        return 0
    return 1


def _remove_earlier(source_path: str) -> None:
    """The files an earlier Stoker wrote for the module at `source_path` under its own tags
    (`nodocs.EARLIER_TAGS`) removed, where they are this installation's alone: beside the
    `.pyc` of a module of Stoker's installation, or under the package's own code cache
    directory. No start reads them, and pip's upgrade removes only what it installed: each
    tag left them for good (a checkout's `opt-nodoc2` files, 4.5 MB). Not the interpreter's
    modules' under a PYTHONPYCACHEPREFIX or a STOKER_CODE_CACHE that an older Stoker,
    installed elsewhere, may share and still read."""
    kept = nodocs.kept_path(source_path)
    directory = os.path.dirname(kept)
    if kept.startswith(nodocs._nodoc + os.sep):
        if nodocs._elsewhere != nodocs.CACHE_DIR or not nodocs._closed_dir(directory):
            return
    elif not any(os.path.abspath(source_path).startswith(own + os.sep) for own in nodocs._own):
        return
    for tag in nodocs.EARLIER_TAGS:
        earlier = os.path.join(directory, os.path.basename(nodocs.cache_from_source(source_path, optimization=tag)))
        with contextlib.suppress(OSError):  # none, or not this user's to remove (neither its code): nothing reads it
            os.unlink(earlier)


def rebuild_open_tree(directory: str | None) -> str:
    """Moves the code cache `directory`'s `nodoc/` aside and removes it when another user could
    have written a level or file of it (`open_level`), for this step to write it again; the
    level, or '' when it was left as it was. One line on stderr says so."""
    if directory is None:
        return ""
    _remove_left_aside(directory)
    root = os.path.join(directory, "nodoc")
    level = open_level(root)
    if not level:
        return ""
    aside = f"{root}.{os.getpid()}.{os.urandom(4).hex()}.old"
    try:
        os.rename(root, aside)  # at once out of every start's way, whatever the removal meets
    except OSError as exc:
        print(f"stoker: {root}: {level} may have been written by another user, and it could not be "
              f"moved aside ({exc.strerror}): each start ignores the files there", file=sys.stderr)
        return ""
    _remove(aside)
    print(f"stoker: {root} written again: {level} may have been written by another user", file=sys.stderr)
    return level


def _remove_left_aside(directory: str) -> None:
    """The `nodoc.PID.HEX.old` trees an earlier step moved aside and could not remove (killed
    meanwhile, or another user still writing into it) removed now; one that cannot be, at the
    next step."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        pid, _, rest = name.removeprefix("nodoc.").partition(".")
        if name.startswith("nodoc.") and pid.isdigit() and rest.endswith(".old"):
            _remove(os.path.join(directory, name))


def _remove(aside: str) -> None:
    """The tree moved aside, fd by fd, never through a symlink (rmtree's own); a symlink (or a
    file) in `nodoc/`'s place unlinked: rmtree refuses one, and it stayed for good."""
    import shutil

    try:
        os.unlink(aside)
    except IsADirectoryError:
        try:  # 3.11's and 3.12's recurse once per level (3.13's not): a tree another user nested 1,000 deep
            shutil.rmtree(aside, ignore_errors=True)
        except RecursionError:  # (ended every step that tried it, each retrying it: `_remove_left_aside`)
            print(f"stoker: {aside}: not removed (too deep): nothing reads it", file=sys.stderr)
    except OSError as exc:
        print(f"stoker: {aside}: not removed ({exc.strerror}): nothing reads it", file=sys.stderr)


def open_level(root: str) -> str:
    """The first directory or file of the tree `root` that is not this user's or root's,
    or that another user may write, or a symlink (`nodocs.owner_only`); '' when none."""
    for directory, subdirectories, files in os.walk(root):  # symlinks listed, never followed
        for path in (directory, *(os.path.join(directory, name) for name in (*subdirectories, *files))):
            try:
                info = os.lstat(path)
            except FileNotFoundError:  # removed meanwhile
                continue
            except OSError:
                return path
            if stat.S_ISLNK(info.st_mode) or not nodocs.owner_only(info, path):
                return path
    return ""


def main(argv: list[str]) -> int:
    """`python -m executor.codecache [PROFILE...]`: each profile's file, in a process each."""

    unknown = [p for p in argv if p not in codecache.PROFILES]
    if unknown:
        print(f"usage: python -m executor.codecache [{'|'.join(codecache.PROFILES)}]...; not a profile: "
              f"{', '.join(unknown)}", file=sys.stderr)
        return 2
    os.umask(os.umask(0o022) | 0o022)  # nothing it makes is another user's to write, whatever the umask
    opened = open_caches()
    if opened:
        print(f"stoker: not written: another user may write {', '.join(opened)}, where root's `stoker` "
              "would load code from (made under a umask of 0?): chmod go-w, then run this again", file=sys.stderr)
        return 1
    rebuild_open_tree(nodocs.cache_dir())
    if len(argv) == 1:
        return 0 if warm(argv[0]) or codecache.counts()[1] == 0 else 1
    failed = [p for p in argv or codecache.PROFILES  # -P: not the working directory's modules
              if subprocess.run([sys.executable, "-P", "-m", "executor.codecache", p], check=False).returncode]
    return 1 if failed else 0


def open_caches() -> list[str]:
    """Each directory this step writes code in, that exists, and that another user may
    write (`replacefile.writable_by_others`): the code cache's, and the `__pycache__` of
    each directory of the packages whose modules it writes (`codecache.NODOC_PACKAGES`):
    Python made them 0777 less the umask (a first `import executor` under a umask of 0)."""
    from importlib.util import find_spec  # the packages found, not run

    from executor.host.replacefile import writable_by_others

    places = [nodocs.cache_dir() or nodocs.CACHE_DIR]
    for name in codecache.NODOC_PACKAGES:
        spec = find_spec(name)
        for top in (spec.submodule_search_locations or ()) if spec is not None else ():
            places += _pycaches(top)
    found = []
    for place in dict.fromkeys(places):
        try:
            info = os.stat(place)
        except OSError:  # none yet: made 0755 (this step's umask)
            continue
        if writable_by_others(info, os.getegid(), place):
            found.append(f"{place} (mode {stat.S_IMODE(info.st_mode):o})")
    return found


def _pycaches(top: str) -> Iterator[str]:
    """The `__pycache__` of `top` and of each directory below it."""
    for directory, subdirectories, _ in os.walk(top):
        subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
        yield os.path.join(directory, "__pycache__")
