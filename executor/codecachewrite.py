"""Writing the attrs code cache's file (`executor/codecache.py`): taking a writer's turn,
merging this process's fresh and served sources into what the file holds, and replacing the
file whole. Loaded only when a process has something to write (`codecache.save()`, the warm
step): never held by a supervisor that had nothing to compile.
"""
from __future__ import annotations

import contextlib
import marshal
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from executor import codecache

__all__ = ["merged", "served_first", "write", "writing"]


@contextlib.contextmanager
def writing(path: Path) -> Iterator[bool]:
    """Holds the `flock` of the file's `.lock` (made 0600: only this user and root may open
    it, so no one else can hold it) while a process reads, merges and writes it again: two at
    once each wrote what it read merged with its own classes, and the one that renamed last
    dropped the other's until a next start compiled them again. Yields whether to write: not
    when another process held it past codecache.LOCK_WAIT_SECS (stopped as it held it: else this one
    never ended). Not held (the write is tried all the same) where the lock cannot be made:
    a directory this user may not write."""
    lock = path.with_name(f"{path.name.removesuffix('.bin')}.lock")
    try:
        from executor.host.replacefile import make_dirs  # standard library only

        make_dirs(str(path.parent), 0o755)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        yield True
        return
    from executor.host.turnlock import take  # standard library only

    turn = take(fd, codecache.LOCK_WAIT_SECS)  # released by the kernel however this process ends
    try:
        yield turn
    finally:
        if turn:  # else the thread that waits for it closes it
            os.close(fd)


def merged(entries: dict[str, tuple[tuple[str, Any], ...]], fresh: list[tuple[str, str, Any]]) -> bool:
    """Puts each fresh source first among its file name's (at most `codecache.KEPT` a name); True when
    one was new."""
    changed = False
    for filename, source, code in fresh:
        kept = entries.get(filename, ())
        if all(cached != source for cached, _ in kept):
            entries[filename] = ((source, code), *kept[:codecache.KEPT - 1])
            changed = True
    return changed


def served_first(entries: dict[str, tuple[tuple[str, Any], ...]],
                  served: list[tuple[str, int]]) -> dict[str, tuple[tuple[str, Any], ...]]:
    """Puts each source this process was served first among its file name's, where the file
    still holds it (by its hash: see the docstring), so that a file written again keeps the
    sources in use, not the `codecache.KEPT` newest (a class served at every start outlives the shapes of
    a twin that changes at every start)."""
    for filename, source_hash in served:
        kept = entries.get(filename, ())
        used = tuple(pair for pair in kept if hash(pair[0]) == source_hash)
        if used:
            entries[filename] = (*used, *(pair for pair in kept if pair not in used))[:codecache.KEPT]
    return entries


def write(path: Path, entries: dict[str, tuple[tuple[str, Any], ...]]) -> bool:
    """Writes the file whole, mode 0644 less the umask (never writable by others), under a
    temporary name of its own (created, never followed or shared: another process's, in
    another pid namespace too) and renames it into place, the directory and each missing
    level above it made (0755 less the umask); False when it could not, with a DEBUG line."""
    from executor.host.replacefile import make_dirs  # standard library only

    temporary = path.with_name(f"{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    created = False
    try:
        make_dirs(str(path.parent), 0o755)  # and each missing level above, as Python's .pyc writes do
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        created = True
        with os.fdopen(fd, "wb") as file:
            file.write(codecache.HEADER + marshal.dumps(entries))
        os.replace(temporary, path)
    except BaseException as exc:  # a Ctrl-C too: `stoker run`'s, once its run is over, ends it here
        if created:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
        if not isinstance(exc, OSError):
            raise
        import logging

        logging.getLogger(__name__).debug("code cache %s not written: %s", path, exc)
        return False
    return True
