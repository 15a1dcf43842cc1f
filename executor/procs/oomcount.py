"""Where this process's memory cgroup counts the kernel's OOM kills, the count, and what a
supervisor keeps of it from its start: the part of the OOM handling every run needs, with no
module the early start (`executor/cli/launch.py`) does not load already (no `re`, no attrs,
no `threading`). What a count that grew means, in words, is `oomkill.py`, loaded only when a
run ends by a SIGKILL nobody in the task sent (`named`).

A run the early start forks is forked before the supervisor exists; its count as it was
forked is read here, just before, so that an OOM kill in the 100-odd ms until the
supervisor starts (a greedy first run is taken within tens of ms) is that run's: read at the
supervisor's start instead, the kill was already in it and the run read "killed by SIGKILL".
The supervisor's `OomCounter` is read as it starts and as each run is forked (`mark`); its
`Shield` lowers its own `oom_score_adj` (`oomkill.py` says why and how).

Never raises: an unreadable file is no count; an adj that cannot be written is no shield.
"""
from __future__ import annotations

import _thread  # loaded with the interpreter: `threading` is not, in the early start
import os
import posixpath

TYPE_CHECKING = False  # not `typing`'s: the early start loads neither typing nor collections
if TYPE_CHECKING:
    from collections.abc import Callable

    from executor.events import ExitStatus

SIGKILL = 9  # POSIX's number: the `signal` module is not loaded in the early start
PROTECTED_ADJ = -999  # the kubelet's own: taken only when nothing else is left (-1000: never)
ADJ_FILE = "/proc/self/oom_score_adj"
NOT_COUNTED = 1 << 62  # a run's count as forked when it could not be read: above any count


class OomCounter:
    """The OOM kill count of one memory cgroup: `directory` on this host, `path` as
    /proc/PID/cgroup names it, `v2` which hierarchy, `top` its mount point (a v2 limit is
    looked for up to it), `seen` the count at the last look, `claimed` the counts that named
    a run (one kill, one run), taken under `claiming` (runs end on the reaper thread and, an
    early start's adopted after it ended, on the owner's: one kill must not name both)."""

    __slots__ = ("directory", "path", "v2", "top", "seen", "claimed", "claiming", "fd")

    def __init__(self, directory: str, path: str, v2: bool, top: str, seen: int = 0) -> None:
        self.directory, self.path, self.v2, self.top = directory, path, v2, top
        self.seen = seen
        self.claimed: set[int] = set()
        self.claiming = _thread.allocate_lock()  # `_thread`'s: no `threading` in the early start
        self.fd = -1  # the count's file, once `hold` opened it

    def hold(self) -> None:
        """Keep the count's file open (close-on-exec; closed with the counter), so that a
        look is one pread, 4-5 us here, where an open, a read and a close took 17: the
        supervisor looks at every fork and at each SIGKILL nobody in the task sent, both on
        a restart's way to its fork. Unopened, each look opens the file as before, and so does
        a look whose held file went with its cgroup (`count`)."""
        try:
            self.fd = os.open(_events_path(self.directory, self.v2), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.fd = -1

    def count(self) -> int | None:
        """The kernel's OOM kills in the cgroup so far; None when unreadable."""
        if self.fd < 0:
            return count(self.directory, self.v2)
        try:
            data = os.pread(self.fd, 4096, 0)  # a cgroup file is rendered anew at offset 0
        except OSError:  # ENODEV for ever once its cgroup went (v2: also a parent's `memory` turned off):
            return count(self.directory, self.v2)  # by its path, as unheld: one made again there is read
        return parse_oom_kills(data.decode(errors="replace"))

    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        """No thread can look any more: the file is closed (a supervisor's, as it goes), by
        the `os.close` bound here: a counter alive as Python ends may outlive `os`'s contents."""
        if self.fd >= 0:
            try:
                _close(self.fd)
            except OSError:
                return

    def mark(self) -> int:
        """The count as a run is forked, its `since`: NOT_COUNTED when unreadable now, so
        that no kill is named for that run (not every one since the supervisor started)."""
        now = self.count()
        return NOT_COUNTED if now is None else now


def named(status: ExitStatus, counter: OomCounter | None, since: int | None,
          sent: bool) -> ExitStatus:
    """`status`, naming the kernel's OOM killer as its sender when it is a SIGKILL nobody in
    the task `sent` and the kill count grew since the run was forked (`since`; None: since
    the supervisor started). Only such a SIGKILL loads `oomkill.py`, on the reaper thread: a
    module that cannot be loaded then (an upgrade in place replaced it, a descriptor or
    memory limit) or does not fit costs the end its OOM words, never the end (raised, the
    reaper would log it and the owner never hear of the run's end), and says so in the log."""
    if status.signal != SIGKILL or counter is None or sent:
        return status
    try:
        from executor.procs import oomkill

        return oomkill.named(status, counter, since)
    except Exception as e:
        import logging

        from config.logline import log_event  # loaded with the supervisor already

        log_event(logging.getLogger(__name__), logging.ERROR, "oom_kill_unexplained",
                  error=f"{type(e).__name__}: {e}", reason="the run's end reads without the OOM killer's part")
        return status


def open_counter() -> OomCounter | None:
    """This process's memory cgroup's counter, as it stands now; None when there is none."""
    proc_cgroup, mountinfo = read("/proc/self", "cgroup"), read("/proc/self", "mountinfo")
    if proc_cgroup is None or mountinfo is None:
        return None
    counter = find_counter(proc_cgroup, mountinfo)
    if counter is None:
        return None
    counter.hold()
    seen = counter.count()
    if seen is None:
        return None
    counter.seen = seen
    return counter


def find_counter(proc_cgroup: str, mountinfo: str,
                 has_events: Callable[[str], bool] | None = None) -> OomCounter | None:
    """Where this process's memory cgroup is (`locate`): v1's `memory` hierarchy when there
    is one, else v2's cgroup, or under v2 the nearest ancestor with `memory.events` (the
    memory controller is enabled from the root down; the root has no count).
    `has_events(dir)` says whether a v2 directory has the file (a look unless given)."""
    found = locate(proc_cgroup, mountinfo, has_events or _events_file)
    if found is None:
        return None
    directory, path, v2, top = found
    return OomCounter(directory, path, v2=v2, top=top)


def early_count() -> int | None:
    """This process's memory cgroup's OOM kills so far; None when there is no count."""
    proc_cgroup, mountinfo = read("/proc/self", "cgroup"), read("/proc/self", "mountinfo")
    if proc_cgroup is None or mountinfo is None:
        return None
    found = locate(proc_cgroup, mountinfo, has_events)
    return None if found is None else count(found[0], found[2])


def count(directory: str, v2: bool) -> int | None:
    """The kernel's OOM kills in the cgroup at `directory` so far; None when unreadable.
    Read with one os.read (the file is a few lines): 9.8 µs a look where open() took 17.7, at every
    fork and at a SIGKILL exit nobody in the task sent."""
    try:
        fd = os.open(_events_path(directory, v2), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    return parse_oom_kills(data.decode(errors="replace"))


def _events_path(directory: str, v2: bool) -> str:
    return posixpath.join(directory, "memory.events" if v2 else "memory.oom_control")


def locate(proc_cgroup: str, mountinfo: str,
           look: Callable[[str], bool]) -> tuple[str, str, bool, str] | None:
    """(directory, path as /proc/PID/cgroup names it, v2, mount point) of the cgroup whose
    count is this process's: v1's `memory` hierarchy when there is one, else v2's cgroup or
    its nearest ancestor with `memory.events` (`look(dir)` says whether it has the file)."""
    paths = parse_memory_paths(proc_cgroup)
    for v2, root, mountpoint in parse_memory_mounts(mountinfo):
        path = paths.get(v2)
        if path is None or path.endswith(" (deleted)"):
            continue
        rest = below(path, root)
        if rest is None:
            continue
        directory = posixpath.join(mountpoint, rest).rstrip("/") or "/"
        if not v2:
            return directory, path, False, mountpoint
        while directory != mountpoint.rstrip("/") and directory != "/":
            if look(directory):
                return directory, path, True, mountpoint
            directory, path = posixpath.dirname(directory), posixpath.dirname(path) or "/"
    return None


def parse_memory_paths(text: str) -> dict[bool, str]:
    """From /proc/self/cgroup text: {False: the v1 memory cgroup, True: the v2 cgroup}."""
    paths: dict[bool, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        if parts[0] == "0" and parts[1] == "":
            paths[True] = parts[2]
        elif "memory" in parts[1].split(","):
            paths[False] = parts[2]
    return paths


def parse_memory_mounts(text: str) -> list[tuple[bool, str, str]]:
    """(v2, root, mount point) of each mount that can count OOM kills, v1 memory first."""
    found = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        options = tail[2].split(",") if len(tail) > 2 else []
        if tail[0] == "cgroup2" or (tail[0] == "cgroup" and "memory" in options):
            found.append((tail[0] == "cgroup2", _unescape(fields[3]), _unescape(fields[4])))
    return sorted(found, key=lambda mount: mount[0])


def parse_oom_kills(text: str) -> int | None:
    """The `oom_kill N` line of memory.events or memory.oom_control; None without one."""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill" and value.isascii() and value.isdigit():
            return int(value)
    return None


def has_events(directory: str) -> bool:
    return read(directory, "memory.events") is not None


_events_file = has_events  # under another name: `find_counter`'s argument hides this one


def read(directory: str, name: str) -> str | None:
    """The whole file (a host with some 500 mounts has a mountinfo past 64 KiB: the memory
    mount read past a cut at 64 KiB was not found, nor the count); None when unreadable."""
    try:
        with open(posixpath.join(directory, name), "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def _unescape(field: str) -> str:
    """Mountinfo's octal escapes (`\\040` a space) undone."""
    parts = field.split("\\")
    out = [parts[0]]
    for part in parts[1:]:
        code = part[:3]
        if len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)) + part[3:])
        else:
            out.append("\\" + part)
    return "".join(out)


def below(path: str, root: str) -> str | None:
    """`path` relative to `root` ("" when equal); None when it is not below it. Here, not in
    `cgroup_paths` (which uses it too), because the early start loads this module alone."""
    if root == "/":
        return path.lstrip("/")
    if path == root:
        return ""
    if path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")) + 1:]
    return None


class Shield:
    """This process's lowered `oom_score_adj` (`own`), the one it started with (`started`),
    which every child is forked at, and its file held open (close-on-exec): a write is one
    pwrite, about 1 us, where an open, write and close took 13."""

    __slots__ = ("started", "own", "fd")

    def __init__(self, started: int, own: int, fd: int) -> None:
        self.started, self.own, self.fd = started, own, fd

    def lift(self) -> None:
        """Before a fork: the child inherits `started`."""
        _pwrite_adj(self.fd, self.started)

    def restore(self) -> None:
        """After it: this process is `own` again."""
        _pwrite_adj(self.fd, self.own)


_shield_lock = _thread.allocate_lock()
_shield: Shield | None = None
_shield_tried = False


def shield() -> Shield | None:
    """Lower this process's `oom_score_adj` to PROTECTED_ADJ, once per process; the Shield
    that forks must lift, or None when it is not lowered (not allowed, or already as low)."""
    global _shield, _shield_tried
    with _shield_lock:
        if _shield_tried:
            return _shield
        _shield_tried = True
        text = read("/proc/self", "oom_score_adj")
        started = int(text) if text is not None and text.strip().lstrip("-").isdigit() else None
        if started is None or started <= PROTECTED_ADJ:
            return None
        try:
            fd = os.open(ADJ_FILE, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            return None
        if not _pwrite_adj(fd, PROTECTED_ADJ):  # not allowed: no CAP_SYS_RESOURCE
            os.close(fd)
            return None
        _shield = Shield(started, PROTECTED_ADJ, fd)
        return _shield


def _pwrite_adj(fd: int, value: int) -> bool:
    try:
        os.pwrite(fd, str(value).encode(), 0)
    except OSError:
        return False
    return True
