"""The host registry's pruning: which entries (and stale temporary and damaged files) go.

Owns the rule of `executor/host/registry.py`'s docstring ("Ended and LOST tasks stay until
..."): `prune`, over the entries a reading read, and `prune_some`, a let-go's bounded
batch. Only this host's entries are judged (`RegistryEntry.of_host`): where several hosts
share one registry root (a home on NFS), another host's supervisor's pid means nothing
here, and its sandbox may not be seen from here at all, so its entry (live or not) is that
host's to prune; removing it deleted a live task's entry once it was older than the
retention. Loaded only to prune: a starting supervisor never does.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Callable

from executor.host.entry import ENTRY_NAME, ENTRY_SUFFIX, RegistryEntry, expired, takers_after
from executor.host.identity import host_identity
from executor.host.registry import Listed, _named_alive, _read_entry
from executor.host.replacefile import TEMP_SUFFIX
from executor.host.sandbox import checkpoint_mtime

STALE_TEMP_SECS = 3600.0
PRUNE_LOOK = 256  # entry files a supervisor that lets go looks at (stat) at most to prune
PRUNE_BATCH = 32  # of which it reads at most these (a reader reads and prunes every one)


def prune_some(dir_fd: int, now: float, retention_secs: float,
               alive: Callable[[RegistryEntry], bool]) -> None:
    """A let-go's pruning: of the names from a point that moves with the clock (so one entry
    that cannot go yet holds back no other), it looks at PRUNE_LOOK at most (one `fstatat`
    each) and reads PRUNE_BATCH at most: those whose file is older than the retention (no
    newer entry has expired: it is written at its end) and whose supervisor is gone (by its
    name). Reading every entry cost each let-go 42 ms at 1,900 entries. The rest the next
    reading prunes; the LOST rule's later supervisors are looked for in the batch only (an
    entry kept longer, never dropped sooner). The one listing, of names (a `DirEntry` each,
    twice, took 0.3 s at 100,000 files), is what still grows with the registry."""
    names = os.listdir(dir_fd)
    entries = [name for name in names if name.endswith(ENTRY_SUFFIX)]
    start = int(now * 1000) % len(entries) if entries else 0
    batch: list[str] = []
    for at in range(min(PRUNE_LOOK, len(entries))):
        name = entries[(start + at) % len(entries)]
        if ENTRY_NAME.match(name) and _older_than(dir_fd, name, now, retention_secs, regular=True) \
                and not _named_alive(name):
            batch.append(name)
            if len(batch) >= PRUNE_BATCH:
                break
    try:
        found = [listed for name in batch if (listed := _read_entry(dir_fd, name)) is not None]
    except OSError:  # no room to read one (`_read_entry`): the next let-go or reading prunes
        return
    prune(dir_fd, found, set(batch), now, retention_secs, alive, names)


def prune(dir_fd: int, found: list[Listed], read: set[str], now: float, retention_secs: float,
          alive: Callable[[RegistryEntry], bool], names: list[str] | None = None) -> set[str]:
    """Remove this host's expired entries (and stale temporary files, and damaged ones: `read`
    but not `found`; a file past the bound, not read, is not judged); their names. Damaged
    files read at the bound go too, so a registry full of them drains (`names`: as listed)."""
    gone: set[str] = set()
    here = host_identity()
    for item in found:
        entry = item.entry
        if not entry.of_host(here) or alive(entry):
            continue
        last = entry.ended_wall
        if last is None:  # LOST: its checkpoint's last write counts, looked at once its entry's expired
            if not expired(item.mtime, now, retention_secs):
                continue  # nor is the later of the two
            # in the `.stoker` it pinned: another's (its sandbox deleted and run again) is a later task's,
            # and so is a write after a later supervisor took it (run again in place, or a new one
            # given its inode number): counted up to that supervisor's registration only
            own = checkpoint_mtime(entry.sandbox, entry.stoker_dir) or 0.0
            taken = min((e.registered_wall for e in takers_after((i.entry for i in found), entry)), default=own)
            last = max(item.mtime, min(own, taken))
        if expired(last, now, retention_secs) and _unlink(dir_fd, entry.name):
            gone.add(entry.name)
    damaged = read - {item.entry.name for item in found}
    for name in os.listdir(dir_fd) if names is None else names:
        if name.endswith(TEMP_SUFFIX):
            limit = STALE_TEMP_SECS  # a writer that died between write and rename
        elif name in damaged:
            limit = retention_secs  # damaged: it says nothing, and goes in time
        else:
            continue
        if _older_than(dir_fd, name, now, limit) and not _named_alive(name):
            _unlink(dir_fd, name)
    return gone


def _older_than(dir_fd: int, name: str, now: float, secs: float, *, regular: bool = False) -> bool:
    """Whether `name` was modified more than `secs` before `now` (and is a regular file, if asked)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    return now - st.st_mtime > secs and (not regular or stat.S_ISREG(st.st_mode))


def _unlink(dir_fd: int, name: str) -> bool:
    try:
        os.unlink(name, dir_fd=dir_fd)
        return True
    except OSError:
        return False
