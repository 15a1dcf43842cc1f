"""One supervisor per sandbox: an advisory lock on `.stoker/supervisor.lock`.

The supervisor (`stoker run`, `stoker executor`) takes an exclusive `flock` on the file for
as long as it holds the sandbox and writes who it is into it (pid, start time, boot, when);
a second one is refused at once with `SandboxBusy`, which names the holder. A `flock` dies
with the open file, so with its holder, even when that is SIGKILLed: a sandbox whose
supervisor is gone is free again, and the next one starts a new attempt in it. The file is
opened through `.stoker`'s directory fd, without following a symlink and without blocking
(the task may have planted a FIFO there), close-on-exec so no task process inherits it.

Readers never take the lock (a `stoker ps` must never make a starting supervisor fail):
they read the holder from the file (`holder`) and check that it is alive. An early start
(`executor/cli/launch.py`) locks the file before the supervisor writes into it: `locked_by`
finds who holds the `flock` in /proc/locks, still without taking it. `byte_lock_holder` finds
there who holds a byte-range lock (`lockf`) of a file: a `stoker run`'s port claim.

The port claims files (`entry.claims_name`, `Registry.open_claims`): a registry root holds
one a boot of each host that claimed ports in it, of no use once that boot is over (its
locks went with its processes); they stayed, one more each reboot, for good. The process
that makes its boot's file (the first claim since the host booted: `claims_made`) records in
it the host it was made on (`host_identity`: machine id and host name, one JSON line at its
start: a claim is a lock at a port's number, which no text of the file disturbs), then
removes each other boot's file that records this host, was made before this host booted
(one made since by another boot is another host's of the same machine id and name, a clone,
whose runs claim in it: the rule of `identity.of_this_host`), and on which no process holds
a claim (a lock of the whole file taken first; on NFS, another host's too). Never another
host's: where hosts share the root (a home on NFS), a file that records another host, or
none (an older Stoker's), is left alone; so is one named by its host, where its boot id
cannot be read (one for good, not one a boot). Never raises: the claims work without it.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import stat

import attrs

from config.words import quoted, shell_path
from executor.host.clock import iso_time
from executor.host.identity import (
    TWIN_SLACK_SECS,
    ProcessIdentity,
    boot_secs,
    boot_to_wall,
    host_identity,
    is_alive,
    read_proc,
)
from executor.host.identity import boot_id as this_boot
from executor.host.sandbox import LOCK_FILE
from executor.logs import log_event
from executor.procs import saferead, sandboxfs

logger = logging.getLogger(__name__)

MAX_HOLDER_BYTES = 4096
TAKEN_SLACK_SECS = 0.05  # a lock taken by a moment this close to a table's reading: read again


class SandboxBusy(Exception):
    """Another live supervisor holds the sandbox; the message names it."""


@attrs.frozen(slots=True)
class Holder:
    pid: int
    start_ticks: int
    boot_id: str
    front_end: str
    since_wall: float
    # CLOCK_BOOTTIME when it took the lock (None: written by a Stoker before it was kept):
    # how long ago, on this boot, whatever the wall clock did since (`stoker kill`'s wait).
    since_boot: float | None = None


class SandboxLock:
    """Held while the object lives and `release` was not called."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def acquire(cls, stoker_dir: int, sandbox: str, me: ProcessIdentity, front_end: str,
                now_wall: float, now_boot: float, *, held_fd: int | None = None) -> SandboxLock:
        """Lock the sandbox whose `.stoker` directory fd is `stoker_dir`. Raises SandboxBusy
        when a live supervisor holds it, OSError when the file cannot be opened. `held_fd`:
        the lock file, opened and locked by this process already (the early start took the
        sandbox before the rest of Stoker was loaded); it becomes this lock's. `now_wall` is
        shown (`since`); `now_boot`, CLOCK_BOOTTIME's now, is what a lock's age is read from."""
        fd = held_fd if held_fd is not None else _open(stoker_dir)
        try:
            if held_fd is None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            other = _read_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise SandboxBusy(_busy_message(sandbox, other)) from None
        try:
            data = json.dumps({"pid": me.pid, "start": me.start_ticks, "boot": me.boot_id,
                               "front_end": front_end, "since": now_wall,
                               "since_boot": now_boot}).encode()
            line = data + b"\n"
            os.pwrite(fd, line, 0)
            os.ftruncate(fd, len(line))  # never to 0 first: ext4 would flush the file then
        except OSError:
            os.close(fd)
            raise
        return cls(fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _open(stoker_dir: int) -> int:
    try:
        return sandboxfs.open_regular(LOCK_FILE, os.O_RDWR | os.O_CREAT, dir_fd=stoker_dir, mode=0o600)
    except sandboxfs.UnsafePath as e:
        raise sandboxfs.UnsafePath(f"{LOCK_FILE}: {e}") from None


def _read_holder(fd: int) -> Holder | None:
    try:
        doc = json.loads(os.pread(fd, MAX_HOLDER_BYTES, 0))
        return Holder(pid=int(doc["pid"]), start_ticks=int(doc["start"]), boot_id=str(doc["boot"]),
                      front_end=str(doc.get("front_end", "")), since_wall=float(doc["since"]),
                      since_boot=float(doc["since_boot"]) if "since_boot" in doc else None)
    except (OSError, ValueError, KeyError, TypeError, RecursionError):  # planted: nested too deep
        return None


def holder(stoker_dir: int) -> Holder | None:
    """Who wrote the lock file last (it may be gone since: check with identity.is_alive)."""
    try:
        fd = saferead.open_file(LOCK_FILE, stoker_dir)
    except OSError:
        return None
    try:
        return _read_holder(fd)
    finally:
        os.close(fd)


class LockTable:
    """/proc/locks, read at the first question and kept for the rest of one reading (a page or a
    scrape of every task of a registry, each gone supervisor's lock looked up: one read of it
    costs 0.16 ms with 10 locks held on the host, 7.7 ms with 1,000), read again for a lock that
    may have been taken since (`taken_by`). Not thread-safe."""

    def __init__(self) -> None:
        self._holders: dict[bytes, tuple[int, ...]] | None = None  # more than one: btrfs (below)
        self._inodes: set[bytes] = set()  # the inode numbers of the locks held, whatever their device
        self._read_boot = 0.0  # when it was read, on the boot clock (`identity.boot_secs`)
        self._mounts: dict[bytes, int] | None = None  # mount id -> its device (`mount_dev`)

    def holder(self, st: os.stat_result, taken_by: float | None = None) -> int | None:
        """The pid holding the `flock` of the file `st` names (None: nobody, or no /proc/locks).
        `taken_by`: a moment on the boot clock the lock was taken by if held at all (a supervisor
        takes it before it writes its attempt's header, whose start it is; None: not known); a
        table read before then may not have it (a supervisor that started since: said LOST) and is
        read again. Nothing to read again for an ended task's lock, taken long before."""
        pids = self.holders(st, taken_by)
        return pids[0] if pids else None

    def holders(self, st: os.stat_result, taken_by: float | None = None) -> tuple[int, ...]:
        """`holder`'s, every pid /proc/locks names for the file's device and inode: on btrfs,
        files of two subvolumes may have both (each numbers its own inodes, from 256)."""
        if self._holders is None or taken_by is None or taken_by >= self._read_boot - TAKEN_SLACK_SECS:
            self._read()
        return self.held(st.st_dev, st.st_ino)

    def held(self, dev: int, ino: int) -> tuple[int, ...]:
        """The pids holding a `flock` of inode `ino` on the file system /proc/locks numbers
        `dev` (its superblock's device), as the table was last read (`holder` reads it)."""
        if str(ino).encode() not in self._inodes:  # nobody's, on any device
            return ()
        assert self._holders is not None
        return self._holders.get(f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}".encode(), ())

    def any_held(self, ino: int) -> bool:
        """Whether a `flock` of an inode numbered `ino` is held on any file system, as the
        table was last read."""
        return str(ino).encode() in self._inodes

    def mount_dev(self, mount_id: bytes | None) -> int | None:
        """The device number /proc/locks gives the files of mount `mount_id` (its superblock's,
        /proc/self/mountinfo's `MAJOR:MINOR`), read once a table: a file's own `st_dev` is
        another on btrfs (each subvolume's) and on an overlay of several file systems (its
        layer's). None: not known."""
        if self._mounts is None:
            self._mounts = {}
            try:
                with open("/proc/self/mountinfo", "rb") as f:
                    lines = f.read().splitlines()  # "ID PARENT MAJOR:MINOR ROOT POINT ..."
            except OSError:
                lines = []
            for fields in (line.split(maxsplit=3) for line in lines):
                major, _, minor = fields[2].partition(b":") if len(fields) > 2 else (b"", b"", b"")
                if major.isdigit() and minor.isdigit():
                    self._mounts[fields[0]] = os.makedev(int(major), int(minor))
        return self._mounts.get(mount_id) if mount_id is not None else None

    def _read(self) -> None:
        self._read_boot, self._holders, self._inodes = boot_secs(), {}, set()
        try:
            with open("/proc/locks", "rb") as f:
                data = f.read()
        except OSError:
            data = b""
        for line in data.splitlines():
            fields = line.split()  # b"1: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF"; waiters: "1: -> ..."
            if len(fields) >= 6 and fields[1] == b"FLOCK" and fields[4].isdigit():
                self._holders[fields[5]] = (*self._holders.get(fields[5], ()), int(fields[4]))
                self._inodes.add(fields[5].rpartition(b":")[2])


def locked_by(stoker_dir: int, locks: LockTable | None = None, taken_by: float | None = None) -> int | None:
    """The pid /proc/locks (`locks`: as read once for many sandboxes, `LockTable.holder`'s `taken_by`)
    names as holding the lock file's `flock` (None: nobody holds it, there is no such file, or
    /proc/locks cannot be read)."""
    pids = lock_holders(stoker_dir, locks, taken_by)
    return pids[0] if pids else None


def lock_holders(stoker_dir: int, locks: LockTable | None = None, taken_by: float | None = None) -> tuple[int, ...]:
    """`locked_by`'s, every pid /proc/locks names for the lock file (`LockTable.holders`)."""
    try:
        st = os.stat(LOCK_FILE, dir_fd=stoker_dir, follow_symlinks=False)
    except OSError:
        return ()
    locks = locks or LockTable()
    pids = locks.holders(st, taken_by)
    if not pids and locks.any_held(st.st_ino):  # under another device: btrfs, an overlay of several file systems
        dev = locks.mount_dev(_mount_id(stoker_dir))
        if dev is not None and dev != st.st_dev:
            pids = locks.held(dev, st.st_ino)
    return pids


def _mount_id(stoker_dir: int) -> bytes | None:
    """The id of the mount the lock file is on (/proc/self/fdinfo's `mnt_id`); None: not known."""
    try:
        fd = os.open(LOCK_FILE, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stoker_dir)
    except OSError:
        return None
    try:
        info = read_proc(f"/proc/self/fdinfo/{fd}")
    finally:
        os.close(fd)
    return next((line.split()[1] for line in info.splitlines() if line.startswith(b"mnt_id:")), None)


def holds(holder: Holder, stoker_dir: int) -> bool:
    """Whether `holder` (as `as_seen_here` names it) runs as itself and holds the lock's
    `flock` (/proc/locks): a supervisor does all its life, while the file's words are anyone's
    who may write it (a task that owns its sandbox), who could name any live process."""
    return is_alive(holder.pid, holder.start_ticks, holder.boot_id) and holder.pid in lock_holders(stoker_dir)


def as_seen_here(holder: Holder, stoker_dir: int) -> Holder:
    """`holder` under the pid this PID namespace knows it by (`seen_here`), or as it is."""
    if is_alive(holder.pid, holder.start_ticks, holder.boot_id):
        return holder
    local = seen_here(stoker_dir, holder.pid, holder.start_ticks, holder.boot_id)
    return holder if local is None else attrs.evolve(holder, pid=local)


def seen_here(stoker_dir: int, pid: int, start_ticks: int | None, boot_id: str,
              locks: LockTable | None = None, taken_by: float | None = None) -> int | None:
    """The pid here of the supervisor that recorded (`pid`, `start_ticks`, `boot_id`) in
    a PID namespace of its own (`stoker run` as a container's main process: pid 1 there),
    its sandbox a volume this namespace sees: the lock's holder in /proc/locks, when that
    process's pid in its own namespace (the last of /proc/PID/status's NSpid) and its
    start time are the ones recorded. None: no such holder (one of another boot: not looked up,
    its header's start on that boot's clock). `locks`, `taken_by`: `locked_by`."""
    locks = locks or LockTable()
    if boot_id and boot_id != this_boot():  # read once a process
        return None
    for local in lock_holders(stoker_dir, locks, taken_by):  # (more than one: btrfs, `LockTable.holders`)
        if local == pid or start_ticks is None or not is_alive(local, start_ticks, boot_id):
            continue
        for line in read_proc(f"/proc/{local}/status", 1 << 16).splitlines():
            if line.startswith(b"NSpid:") and line.split()[-1] == str(pid).encode():
                return local
    return None


def _busy_message(sandbox: str, other: Holder | None) -> str:
    """Who holds `sandbox`, and how to stop it: with `stoker kill` here, or, where the lock
    file names a supervisor of another boot (a held lock outlives no reboot: another host's,
    the sandbox a directory both see on NFS), on that host (whose pid means nothing here)."""
    who, there = "another Stoker supervisor", False
    if other is not None:
        what = f"stoker {other.front_end}" if other.front_end else "Stoker"
        there = bool(other.boot_id) and other.boot_id != this_boot()
        who = (f"a live {what}{' of another host' if there else ''} "
               f"(pid {other.pid}{' there' if there else ''}, since {iso_time(other.since_wall)})")
    # named as errors quote what they were given; the command as bash reads it back (not repr:
    # `"it's $HOME"` expanded there)
    stop = "on that host (`stoker ps` there lists it)" if there else f"first (`stoker kill {shell_path(sandbox)}`)"
    return f"sandbox {quoted(sandbox)} is held by {who}: one supervisor per sandbox; stop it {stop} or use another sandbox"


def byte_lock_holder(st: os.stat_result, number: int) -> int:
    """The pid /proc/locks gives for the lock that covers byte `number` of the file `st` names
    (`lock_holder_listed`); 0 when /proc/locks cannot be read."""
    try:
        with open("/proc/locks", "rb") as f:
            lines = f.read().splitlines()  # "1: POSIX  ADVISORY  WRITE PID MAJ:MIN:INODE START END"
    except OSError:
        return 0
    return lock_holder_listed(lines, st, number)


def lock_holder_listed(lines: list[bytes], st: os.stat_result, number: int) -> int:
    """The pid of `lines`' POSIX (or open file description) lock that covers byte `number` of
    the file `st` names: on its device and inode; else, none listed on its device, on its inode
    alone (/proc/locks numbers the device as the file system's superblock does: a btrfs
    subvolume's or overlayfs' `st_dev` is another). By inode alone first, a whole-file lock on
    another file system's file of that inode number named a process that never opened the
    claims file (`stoker run`'s port claims: executor/local/runstart.py). 0 when none is listed or the pid is not known (an open file description
    lock's is -1)."""
    inode, device = b":" + str(st.st_ino).encode(), (os.major(st.st_dev), os.minor(st.st_dev))
    elsewhere = 0
    for fields in map(bytes.split, lines):
        if len(fields) != 8 or fields[1] not in (b"POSIX", b"OFDLCK") or not fields[4].lstrip(b"-").isdigit():
            continue  # a waiter's ("1: -> POSIX ..."), a lease's, a flock's
        if not fields[5].endswith(inode) or fields[5].count(b":") != 2 or not fields[6].isdigit():
            continue
        major, minor, _ = fields[5].split(b":")
        if int(fields[6]) <= number and (fields[7] == b"EOF" or number <= int(fields[7])):
            if (_hex(major), _hex(minor)) == device:
                return int(fields[4])
            elsewhere = elsewhere or int(fields[4])
    return elsewhere


def _hex(text: bytes) -> int:
    """A device number's part as /proc/locks writes it (hex); -1 when it is none."""
    try:
        return int(text, 16)
    except ValueError:
        return -1


# ---- the port claims files of earlier boots ----

HOST_LINE_BYTES = 1024  # a record longer than this is not read as one (not this host's)
# a boot's file: its name holds a boot id (`claims_name`), not a host's machine id and name
_BOOT_NAME = re.compile(r"ports\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.claims")


def host_line(host: tuple[str, str]) -> bytes:
    return json.dumps({"host_id": host[0], "host_name": host[1]}).encode() + b"\n"


def recorded_host(fd: int) -> tuple[str, str] | None:
    """The host a claims file records (`host_line`); None where it records none."""
    line = os.pread(fd, HOST_LINE_BYTES, 0).split(b"\n", 1)[0]
    try:
        doc = json.loads(line)
    except ValueError:  # empty (an older Stoker's file), or not a record
        return None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in ("host_id", "host_name")):
        return None
    return doc["host_id"], doc["host_name"]


def claims_made(dir_fd: int, fd: int, name: str) -> None:
    """`fd`: the claims file `name` this process just made in the registry root `dir_fd`. Its
    host recorded, and the files of this host's earlier boots removed (one DEBUG line)."""
    here = host_identity()
    try:
        os.pwrite(fd, host_line(here), 0)
        booted = boot_to_wall(0.0)
        if not _BOOT_NAME.fullmatch(name) or booted is None:
            return
        gone = [other for other in os.listdir(dir_fd)
                if other != name and _BOOT_NAME.fullmatch(other) and _earlier_boot_removed(dir_fd, other, here, booted)]
    except OSError as exc:  # a full disk, a listing refused: the files stay to the next boot's
        log_event(logger, logging.DEBUG, "port_claims_not_pruned", error=f"{type(exc).__name__}: {exc}")
        return
    if gone:
        log_event(logger, logging.DEBUG, "port_claims_pruned", files=",".join(sorted(gone)),
                  reason="the port claims files of this host's earlier boots")


def _earlier_boot_removed(dir_fd: int, name: str, here: tuple[str, str], booted_wall: float) -> bool:
    """Remove the claims file `name` if it is of an earlier boot of this host, which no
    process claims a port in; whether it was removed."""
    try:
        fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or recorded_host(fd) != here \
                or st.st_mtime > booted_wall + TWIN_SLACK_SECS:
            return False
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the whole file: refused while a claim is held
        os.unlink(name, dir_fd=dir_fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # its lock with it
