"""The host registry: every task Stoker supervises on this host, one file per supervisor.

Like Thermos' checkpoint root: a directory (`RegistrySettings.registry_root`: $STOKER_ROOT,
else /var/run/stoker for root, else a per-user state directory; docs/contract.md §8) with
one `PID-STARTTICKS.json` per supervisor (`executor/host/entry.py`), pointing at its
sandbox. `stoker run` and `stoker executor` write theirs through `HostSession`; `stoker ps`
and the `TASK_ID` lookups read them.

- Writing never blocks a launch: when the root cannot be made or written, one WARNING line
  says so (once per process) and the task runs anyway. An entry is written to a temporary
  file (owner-only, 0600) and renamed over, so a reader sees the old entry or the new one.
- Reading trusts nothing: only regular files with an entry's name, opened without following
  a symlink or blocking, at most `MAX_ENTRY_BYTES` each and `registrylookup.MAX_ENTRIES` in all; a root
  that is not this user's, or that others may write, or on a path another user could
  redirect (`replacefile.untrusted_level`), is not read (nor written). `read`
  says so (`RegistryUnreadable`: a root that is not trusted, or that this user may not read,
  or entries it may not read, as another user's root's), so that `stoker ps` never shows
  a registry it could not read as one without tasks; `entries` lists what it could read.
  A reader that reads it again and again (`stoker observe`) keeps what it read (`kept`):
  an entry whose file has the stamp it had when it was parsed is not opened or parsed again,
  once that file's last change is its window older than the reading (`entrycache.racy`: 50 ms
  on a file system of fine times, 2 s on one of whole seconds).
- Ended and LOST tasks stay until the last sign of them is older than the retention
  (`entry.expired`: `prune`); they are pruned whenever the registry is read and when a supervisor
  lets go (at most `PRUNE_BATCH` of them read: its cost hardly grows with the registry), never on a timer (a starting supervisor writes with `prune=False`: it reads no
  other entry before its first fork). The last sign: the entry's `ended` time, else the newest of the entry file's and
  its checkpoint's modification times. A file named like an entry that this version cannot
  read (damaged, or written by another version of Stoker) goes once it is older than the
  retention, unless the supervisor its name names still runs.
- Several hosts may share the root (an ordinary user's default one is under the home: a
  home on NFS). Each entry names the host that wrote it (`identity.host_identity`: machine
  id and host name), and only this host's are pruned (another host's supervisor's pid means
  nothing here, and its sandbox may not be seen from here: a live task's entry, older than
  the retention, was deleted) or judged alive (`identity.of_this_host`, `identity.supervisor_alive`); which are listed is the readers' choice
  (`registrylookup.split_hosts`). Each host claims its ports in a file of its own, by its boot (`claims_name`).
- A sandbox's path is kept as its bytes read as UTF-8 (a byte that is not UTF-8 as its
  surrogate escape), whatever the locale of the supervisor that wrote it, and read back as
  the bytes they stand for: a `stoker ps` under `LC_ALL=C PYTHONUTF8=0` (file names in
  ASCII) raised UnicodeEncodeError on the sandbox `/tmp/sb-ünï` a UTF-8 supervisor had
  registered, and one in a Latin-1 locale would look for another directory. A task id
  given on the command line is looked up the same way (`作业-0-1a2b` was no task there).
"""
from __future__ import annotations

import errno
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from config.registry import RegistrySettings
from executor.host import identity
from executor.host.entry import (
    ENTRY_NAME,
    ENTRY_SUFFIX,
    RegistryEntry,
    claims_name,
    expired,
    takers_after,
)
from executor.host.identity import host_identity, of_this_host, supervisor_alive
from executor.host.lock import claims_made
from executor.host.replacefile import (
    TEMP_SUFFIX,
    create_file,
    local_path,
    make_dirs,
    portable_path,
    replace_file,
    untrusted_level,
)
from executor.host.sandbox import checkpoint_mtime
from executor.logs import log_event
from executor.procs import saferead

if TYPE_CHECKING:  # a supervisor keeps no entries: it never loads the reader's cache
    from executor.host.entrycache import EntryCache, Reading

logger = logging.getLogger(__name__)

MAX_ENTRY_BYTES = 65536
STALE_TEMP_SECS = 3600.0
PRUNE_LOOK = 256  # entry files a supervisor that lets go looks at (stat) at most to prune
PRUNE_BATCH = 32  # of which it reads at most these (a reader reads and prunes every one)
_NO_ROOM = (errno.EMFILE, errno.ENFILE, errno.ENOMEM)  # this process's want, not the file's fault

_warned: set[str] = set()
_warned_lock = threading.Lock()


class RegistryUnreadable(Exception):
    """The registry is there but cannot be read, or is not trusted; the message says why."""


@attrs.frozen(slots=True)
class Listed:
    """An entry as read, with its file's modification time and name (`RegistryEntry.named`)."""

    entry: RegistryEntry
    mtime: float
    name: str


class Registry:
    def __init__(self, settings: RegistrySettings,
                 alive: Callable[[RegistryEntry], bool] | None = None,
                 kept: EntryCache[Listed | None] | None = None) -> None:
        """`kept`: the entries of this process's last reading, each parsed again only once its
        file changed (`stoker observe`'s; a supervisor, `ps` or `status` keeps none)."""
        self.root = settings.registry_root
        self.retention_secs = settings.registry_retention_secs
        self.alive = alive or supervisor_alive
        self.kept = kept
        self._names: dict[tuple[int, int, str], str] = {}  # the file each supervisor's entry went in

    # ---- writing ----

    def write(self, entry: RegistryEntry, *, prune: bool = True) -> bool:
        """Write (or replace) `entry` atomically; False, with one WARNING per process, when
        the registry cannot be written. Prunes expired entries first, unless not `prune`
        (a starting supervisor's: it reads no other entry). A let-go's pruning reads at most
        PRUNE_BATCH entries (`prune_some`)."""
        try:
            make_dirs(self.root, 0o700)  # each level 0700, as XDG asks of ~/.local/state
            fd = self.open_root()
            try:
                if prune:
                    prune_some(fd, time.time(), self.retention_secs, self.alive)
                doc = entry.to_json() | {"sandbox": portable_path(entry.sandbox)}
                self._put(fd, entry, json.dumps(doc).encode())
            finally:
                os.close(fd)
        except OSError as exc:
            who = entry.label or entry.task_id  # none yet: an executor not given its task
            what = f"task {who}" if who else f"the supervisor of {entry.sandbox}"
            self._warn_once(f"cannot register {what} "
                            f"in {self.root}: {saferead.describe(exc)}; it runs anyway, but "
                            f"`stoker ps` will not list it")
            return False
        return True

    def _put(self, dir_fd: int, entry: RegistryEntry, data: bytes) -> None:
        """`data` as `entry`'s file: under its `name` unless another supervisor's entry is
        there (another host's of the same pid and start, in a root hosts share; an earlier
        boot's), then under its `tagged_name`; the first write makes the file only where none
        is (two hosts writing one name at once: one of them is told), later ones replace it."""
        key = (entry.supervisor_pid, entry.supervisor_start, entry.supervisor_boot)
        name = self._names.get(key)
        if name is None:
            name, written = _free_name(dir_fd, entry, data)
            self._names[key] = name
            if written:
                return
        replace_file(name, data, dir_fd=dir_fd)

    def open_claims(self) -> int:
        """This host's port claims file (`claims_name`, made 0600) in the registry root, made as
        for an entry, open for reading and writing: one byte-range lock a loopback port that a
        live `stoker run` chose (executor/local/runstart.py, `PortClaims`). Its maker removes
        those of this host's earlier boots (`lock.claims_made`). Raises OSError where the root
        cannot be made, or is not trusted (another user could hold every port's lock)."""
        make_dirs(self.root, 0o700)
        fd = self.open_root()
        try:
            name = claims_name(identity.boot_id(), identity.host_identity())
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                claims = os.open(name, flags | os.O_EXCL, 0o600, dir_fd=fd)
            except FileExistsError:  # this boot's: made by its first claim
                return os.open(name, flags, 0o600, dir_fd=fd)
            claims_made(fd, claims, name)  # once a boot: its host recorded, this host's earlier boots' removed
            return claims
        finally:
            os.close(fd)

    def _warn_once(self, message: str) -> None:
        with _warned_lock:
            if self.root in _warned:
                return
            _warned.add(self.root)
        log_event(logger, logging.WARNING, "registry_problem", reason=message)

    # ---- reading ----

    def entries(self) -> list[Listed]:
        """Every entry still listed (expired ones are pruned first), oldest first; [] when
        there is no registry or it cannot be read or trusted (and without the entries this
        user may not read)."""
        from executor.host.registrylookup import listing  # (a reader's: never a supervisor's)

        try:
            return listing(self)[0]
        except RegistryUnreadable:
            return []

    def read(self) -> list[Listed]:
        """As `entries`, but a registry that is there and cannot be read or trusted, or an
        entry this user may not read, raises RegistryUnreadable (no registry: [])."""
        return self.read_all()[0]

    def read_all(self) -> tuple[list[Listed], list[str]]:
        """As `read`, and, from the same reading, the names of the files named like an entry
        that this version cannot read as one while the supervisor the name names runs: a newer
        Stoker's entry (another field or value), or a damaged one. Their tasks are not listed;
        `stoker ps` and the observer say so."""
        return self.read_noting()[:2]

    def read_noting(self) -> tuple[list[Listed], list[str], list[str]]:
        """As `read_all`, and the names of the other files it did not read as entries (`stoker
        ps` says how many): one named like an entry that is not one (not JSON, a field missing,
        not a regular file) of a supervisor that is gone, and any other file but those the
        registry or a file system keeps there by design (`by_design`), sorted."""
        from executor.host.registrylookup import listing  # (a reader's: never a supervisor's)

        kept, denied, unread, others = listing(self)
        if denied:
            raise RegistryUnreadable(f"cannot read {denied} of the entries in the registry "
                                     f"{self.root} (Permission denied: another user's)")
        alive = [name for name in unread if _named_alive(name)]
        return kept, sorted(alive), sorted(others + [name for name in unread if name not in alive])

    def open_root(self) -> int:
        fd = saferead.open_root(self.root)
        st = os.fstat(fd)
        if st.st_uid not in (os.geteuid(), 0) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            os.close(fd)
            raise saferead.UnsafeEntry(f"{self.root} is not trusted: it belongs to uid "
                                       f"{st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}")
        level = untrusted_level(self.root)
        if level:
            os.close(fd)
            raise saferead.UnsafeEntry(f"{self.root} is not trusted: {level}, so another user "
                                       f"could redirect it")
        return fd

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
        found = [listed for name in batch if (listed := read_entry(dir_fd, name)) is not None]
    except OSError:  # no room to read one (`read_entry`): the next let-go or reading prunes
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
        if not of_this_host(entry, here) or alive(entry):
            continue
        last = entry.ended_wall
        if last is None:  # LOST: its checkpoint's last write counts, looked at once its entry's expired
            if not expired(item.mtime, now, retention_secs):
                continue  # nor is the later of the two
            # in the `.stoker` it pinned: another's (its sandbox deleted and run again) is a later task's,
            # and so is a write after a later supervisor took it (run again in place, or a new one
            # given its inode number): counted up to that supervisor's registration only; this
            # host's (another host's run at the same path, a shared root, is in another directory)
            own = checkpoint_mtime(entry.sandbox, entry.stoker_dir) or 0.0
            ours = (i.entry for i in found if of_this_host(i.entry, here))
            taken = min((e.registered_wall for e in takers_after(ours, entry)), default=own)
            last = max(item.mtime, min(own, taken))
        if expired(last, now, retention_secs) and _unlink(dir_fd, item.name):
            gone.add(item.name)
    damaged = read - {item.name for item in found}
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


def read_entry(dir_fd: int, name: str, denied: list[str] | None = None,
                reading: Reading[Listed | None] | None = None) -> Listed | None:
    """The entry file `name` as read; None when it is none. OSError when there was no room to
    read it (`_NO_ROOM`): not judged damaged (a reading at the descriptor limit dropped them)."""
    try:
        fd = saferead.open_file(name, dir_fd)
        try:
            st = os.fstat(fd)
            data = os.read(fd, MAX_ENTRY_BYTES + 1) if st.st_size <= MAX_ENTRY_BYTES else b""
        finally:
            os.close(fd)
    except PermissionError:
        if denied is not None:
            denied.append(name)
        return None
    except OSError as exc:
        if exc.errno in _NO_ROOM:
            raise
        return None
    listed = _parsed(name, data, st.st_mtime)
    if reading is not None:
        reading.put(name, st, listed)
    return listed


def _parsed(name: str, data: bytes, mtime: float) -> Listed | None:
    """The entry file `name` holding `data` (modified at `mtime`) as read; None: not an entry."""
    try:
        entry = RegistryEntry.from_json(json.loads(data))
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json recurses
        return None
    if entry is None or not entry.named(name):
        return None
    local = local_path(entry.sandbox)  # the same string where file names are UTF-8: kept as it is
    return Listed(entry if local == entry.sandbox else attrs.evolve(entry, sandbox=local), mtime, name)


def _free_name(dir_fd: int, entry: RegistryEntry, data: bytes) -> tuple[str, bool]:
    """The name of `entry`'s file, and whether `data` was written there (made, where no file
    was): its `name` where no file is or its own supervisor's is, else its `tagged_name`.
    Where the file system makes no hard link (`create_file`), its `name` where none is."""
    try:
        create_file(entry.name, data, dir_fd=dir_fd)
        return entry.name, True
    except FileExistsError:
        return _beside(dir_fd, entry), False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
            raise
        return (_beside(dir_fd, entry) if _exists(dir_fd, entry.name) else entry.name), False


def _beside(dir_fd: int, entry: RegistryEntry) -> str:
    """`entry`'s name where a file holds it: its own supervisor's entry there (or no tag
    known), its `name`; another's, or what reads as none, its `tagged_name`."""
    try:
        there = read_entry(dir_fd, entry.name)
    except OSError:
        there = None
    if (there is not None and there.entry.same_supervisor(entry)) or not entry.tagged_name:
        return entry.name
    return entry.tagged_name


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def by_design(name: str) -> bool:
    """Whether a file `name` in the registry root is one the registry keeps there besides its
    entries (a write's temporary, `.NAME.RANDOM.tmp`; a port claims file, `ports.*.claims`) or
    a file system does (NFS's `.nfsXXXX` of a file removed while open; a mount's `lost+found`)."""
    return (name.startswith(".") and name.endswith(TEMP_SUFFIX) or name.startswith("ports.") and name.endswith(".claims")
            or name.startswith(".nfs") or name == "lost+found")


def _named_alive(name: str) -> bool:
    """Whether `name` is an entry's (`PID-STARTTICKS[.TAG].json`) whose supervisor runs: an entry
    this version cannot read may be a newer Stoker's (another field, another value), and is
    never removed while the task it lists runs (the boot is not in the name, so a process of
    another boot with the same pid and start only keeps it longer)."""
    if not ENTRY_NAME.match(name):
        return False
    pid, _, ticks = name[:-len(ENTRY_SUFFIX)].partition(".")[0].partition("-")
    return identity.is_alive(int(pid), int(ticks))
