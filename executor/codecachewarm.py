"""`python -m executor.codecache [PROFILE...]`: each profile's code cache file written ahead
of time, as `compileall` does for `.pyc` files (for an installation its users cannot write
to, run it as the installer), with the modules' code without docstrings
(`executor/nodocs.py`). The cache itself, and its file's rules: `executor/codecache.py`."""
from __future__ import annotations

import sys
from typing import Any

from executor import codecache, deferred, nodocs


def warm(profile: str) -> bool:
    """Compiles what `profile`'s command imports at start and writes its file, whatever
    PYTHONDONTWRITEBYTECODE says (it was asked for), and each of those modules' code
    without docstrings (`executor/nodocs.py`); True when it wrote the file. The file then
    holds only what this start used: each name's other sources (an older Stoker's shapes),
    which a command would hold unused for its whole life, are gone (`_used`). The modules the
    entry point defers are deferred first (`executor/deferred.py`), as a command has them.
    Call it in a fresh process: a class created before `install()` is not seen."""
    import importlib

    deferred.defer()
    if not codecache.install(profile):
        return False
    sys.dont_write_bytecode = False
    nodocs.install()
    for module in codecache.START_MODULES[profile]:
        importlib.import_module(module)
    nodocs.write_loaded()  # those this process loaded before the loader was in place
    nodocs.write_packages(codecache.NODOC_PACKAGES)  # and those a command loads when it needs them
    cache = codecache._cache
    assert cache is not None  # (installed above)
    entries = codecache._read(cache.path)
    used = _used(entries, cache.served)
    codecache._merged(used, cache.fresh)
    cache.compiled += len(cache.fresh)
    cache.fresh.clear()
    return used != entries and codecache._write(cache.path, used)


def _used(entries: dict[str, tuple[tuple[str, Any], ...]],
          served: list[tuple[str, int]]) -> dict[str, tuple[tuple[str, Any], ...]]:
    """The sources of `entries` this process was served (by their hash), each name's in its order."""
    hashes: dict[str, set[int]] = {}
    for filename, source_hash in served:
        hashes.setdefault(filename, set()).add(source_hash)
    used = {name: tuple(pair for pair in kept if hash(pair[0]) in hashes.get(name, ())) for name, kept in entries.items()}
    return {name: kept for name, kept in used.items() if kept}


def main(argv: list[str]) -> int:
    """`python -m executor.codecache [PROFILE...]`: each profile's file, in a process each."""
    import subprocess

    unknown = [p for p in argv if p not in codecache.PROFILES]
    if unknown:
        print(f"usage: python -m executor.codecache [{'|'.join(codecache.PROFILES)}]...; not a profile: "
              f"{', '.join(unknown)}", file=sys.stderr)
        return 2
    if len(argv) == 1:
        return 0 if warm(argv[0]) or codecache.counts()[1] == 0 else 1
    failed = [p for p in argv or codecache.PROFILES
              if subprocess.run([sys.executable, "-m", "executor.codecache", p], check=False).returncode]
    return 1 if failed else 0
