"""Which process is a task's supervisor, so that a reused pid is never mistaken for it.

Owns `ProcessIdentity` (pid, start time in clock ticks after boot from `/proc/PID/stat`,
counted as the host's time namespace counts them, and the boot's id from
`/proc/sys/kernel/random/boot_id`), reading it for a pid or for this process, and
`is_alive`: the same pid, started at the same tick (`same_start`: give or take one) of the
same boot, and not a zombie. A pid the kernel has handed to another process since has a
later start time; one from before a reboot has another boot id. Reads /proc only; never signals anything.

The same questions of a registry entry (`executor/host/registry.py`, `registrylookup.py`):
whether it is this host's (`of_this_host`: by the host it records, and its boot) and
whether its supervisor runs (`supervisor_alive`), both by this host's identity and boot.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

import attrs

from executor.procs.pidsignal import live_fields

TYPE_CHECKING = False
if TYPE_CHECKING:  # an annotation only: entry.py is the registry's
    from executor.host.entry import RegistryEntry

_BOOT_ID = "/proc/sys/kernel/random/boot_id"
_MACHINE_IDS = ("/etc/machine-id", "/var/lib/dbus/machine-id")


@attrs.frozen(slots=True)
class ProcessIdentity:
    pid: int
    start_ticks: int  # /proc/PID/stat field 22: clock ticks after boot
    boot_id: str


def read_proc(path: str, limit: int = 4096) -> bytes:
    """A small /proc file, b"" when unreadable (the process is gone, or not ours to read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        return os.read(fd, limit)
    except OSError:
        return b""
    finally:
        os.close(fd)


_boot_id: str | None = None


def boot_id() -> str:
    """This boot's id, read once per process: it cannot change while the process lives (an
    observer read it again for each live supervisor it was asked about, twice a request)."""
    global _boot_id
    if _boot_id is None:
        found = read_proc(_BOOT_ID).decode("ascii", "replace").strip()
        if not found:
            return found  # unreadable (no /proc yet, in a chroot): asked again next time
        _boot_id = found
    return _boot_id


_machine: str | None = None


def host_identity() -> tuple[str, str]:
    """(machine id, host name) of the host this process runs on: which host wrote a registry
    entry, where a registry root is shared (a home on NFS). The machine id (/etc/machine-id,
    else D-Bus' copy; "" where there is none), read once per process, survives reboots, as
    the boot id does not, and differs between hosts; the kernel's host name (`uname`'s
    nodename, which a UTS namespace sets) tells apart containers of one host that share its
    machine id. The name is read at each call (a system call, no file): a host may be
    renamed while a process lives (`hostnamectl set-hostname`, DHCP), and an observer or a
    supervisor that kept the name it read at its start took the host's entries written
    since for another host's. One small file read, no module loaded: it is read on the
    start path."""
    global _machine
    if _machine is None:
        machine = ""
        for path in _MACHINE_IDS:
            machine = read_proc(path, 64).decode("ascii", "replace").strip()
            if machine:
                break
        _machine = machine
    return _machine, os.uname().nodename


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, field 22: start in clock ticks after boot, as this process's time
    namespace counts it) of /proc/PID/stat; None when the process is gone or a zombie."""
    fields = live_fields(read_proc(f"/proc/{pid}/stat"))  # a headless thread group lives
    if fields is None:
        return None
    try:
        return int(fields[1]), int(fields[19])
    except ValueError:
        return None


def is_stopped(pid: int) -> bool:
    """The process is stopped (state T: SIGSTOP, a job-control stop) or stopped by a
    tracer (t: a debugger): /proc/PID/stat's third field."""
    data = read_proc(f"/proc/{pid}/stat")
    return data[data.rfind(b")") + 2:][:1] in (b"T", b"t")


def _start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, as the host's time namespace counts it; None when the
    process is gone or a zombie."""
    found = _stat(pid)
    return None if found is None else found[1] - boottime_offset_ticks()


def child_start_ticks(pid: int, parent: int) -> int | None:
    """The start of the live process `pid` (field 22, as /proc/PID/stat shows it here) while
    it is a child of `parent`: how a supervisor's run is told from a reused pid without a
    clock (every run's top is its supervisor's child until reaped; a start recorded as wall
    time is off by any step the clock took since). None when it is gone or not that child."""
    found = _stat(pid)
    return found[1] if found is not None and found[0] == parent else None


def child_started_wall(pid: int, parent: int) -> float | None:
    """When the live process `pid`, a child of `parent` (a supervisor's run), started, in
    today's wall clock (`child_start_ticks`)."""
    ticks = child_start_ticks(pid, parent)
    return None if ticks is None else boot_wall() + ticks / os.sysconf("SC_CLK_TCK")


_offset_ticks: int | None = None
# Counted as the host's namespace counts it, a start is exact in the host's namespace and in
# one whose boot-time offset is whole clock ticks (`unshare --time` takes seconds); under
# any other offset (a container CRIU restored keeps its clocks to the nanosecond) the kernel
# rounds the shifted start, and the count may be one tick off either way. A pid comes back
# only after the kernel has handed out every other (pids go round): never within a tick.
START_SLACK_TICKS = 1


def same_start(seen: int, recorded: int) -> bool:
    """Whether two starts, each counted as the host's namespace counts it (perhaps from
    another time namespace), are one process's (`START_SLACK_TICKS`)."""
    return abs(seen - recorded) <= START_SLACK_TICKS


def boottime_offset_ticks() -> int:
    """The boot-time offset of this process's time namespace, in clock ticks (0 in the
    host's, or on a kernel without them). /proc/PID/stat counts a start from the boot as
    the *reader's* namespace sees it: a supervisor under `unshare --time` and `stoker ps`
    outside it would each read another start for the same process, and call a live one
    gone. Less this offset, both read the host's count. Read once per process."""
    global _offset_ticks
    if _offset_ticks is None:
        ticks = 0
        for line in read_proc("/proc/self/timens_offsets").splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[0] == b"boottime":
                try:
                    ticks = (int(fields[1]) * 10**9 + int(fields[2])) * os.sysconf("SC_CLK_TCK") // 10**9
                except ValueError:
                    ticks = 0
        _offset_ticks = ticks
    return _offset_ticks


def identity_of(pid: int) -> ProcessIdentity | None:
    """The identity of the live process `pid` now; None when there is none (or a zombie)."""
    if pid <= 0:
        return None
    ticks = _start_ticks(pid)
    return None if ticks is None else ProcessIdentity(pid, ticks, boot_id())


def own_identity() -> ProcessIdentity:
    found = identity_of(os.getpid())
    assert found is not None, "this process has no /proc/self/stat"
    return found


_looks = threading.local()  # .alive: this thread's answers of one reading (`one_reading`), or None


@contextlib.contextmanager
def one_reading() -> Iterator[None]:
    """Inside, in this thread, `is_alive` answers each (pid, start, boot) as it first did: one
    reading of the registry and its tasks (an observer's request) looks at each supervisor
    once (its registry's pruning, then each task's inspection, looked at every one again)."""
    outer = getattr(_looks, "alive", None)
    if outer is None:
        _looks.alive = {}
    try:
        yield
    finally:
        if outer is None:
            _looks.alive = None


def is_alive(pid: int | None, start_ticks: int | None, boot: str = "",
             started_before_wall: float | None = None) -> bool:
    """Whether the process recorded as (`pid`, `start_ticks`, `boot`) still runs. Without
    a recorded start (older checkpoints), a live `pid` counts only if it started before
    `started_before_wall` (+1 s) when that is given: a later one is a reused pid. Within
    `one_reading`, as it was first answered there."""
    memo = getattr(_looks, "alive", None)
    if memo is None:
        return _is_alive(pid, start_ticks, boot, started_before_wall)
    key = (pid, start_ticks, boot, started_before_wall)
    if key not in memo:
        memo[key] = _is_alive(pid, start_ticks, boot, started_before_wall)
    return bool(memo[key])


def _is_alive(pid: int | None, start_ticks: int | None, boot: str,
              started_before_wall: float | None) -> bool:
    if pid is None or pid <= 0:
        return False
    now = identity_of(pid)
    if now is None:
        return False
    if start_ticks is not None:
        return same_start(now.start_ticks, start_ticks) and (not boot or now.boot_id == boot)
    if started_before_wall is None:
        return True
    return started_wall(now) <= started_before_wall + 1.0


def started_wall(identity: ProcessIdentity) -> float:
    """When the process started, as wall time."""
    ticks = identity.start_ticks + boottime_offset_ticks()  # as this namespace counts it, as `boot_wall`
    return boot_wall() + ticks / os.sysconf("SC_CLK_TCK")


_boot_wall = 0.0
BOOT_WALL_SLACK_SECS = 0.005  # a boot moment within this of the last one given is that one


def boot_wall() -> float:
    """When the host booted, in today's wall clock, to the clock's precision: now less the
    boot clock (CLOCK_BOOTTIME as this time namespace counts it, as /proc/PID/stat counts a
    start); the best of three readings (a thread descheduled between its two clocks reads
    it early). /proc/stat's `btime` is whole seconds, the fraction cut: a start counted from
    it was up to a second early (a running run `up 2.9s` in a task started 2.0s ago, and an
    older Stoker's task, whose start is its supervisor's, as much older than it was). The
    last one given is given again while a new reading is within BOOT_WALL_SLACK_SECS of it,
    so that a process's start is the same at every read (as `btime` was), and follows a
    step of the wall clock."""
    global _boot_wall
    found = max(time.time() - time.clock_gettime(time.CLOCK_BOOTTIME) for _ in range(3))
    if abs(found - _boot_wall) > BOOT_WALL_SLACK_SECS:
        _boot_wall = found
    return _boot_wall


def boot_secs() -> float:
    """Now on the host's boot clock: seconds since it booted, suspend included, as its time
    namespace counts them (a process under `unshare --time` reads the same), and never
    stepped as the wall clock is (NTP, a VM resumed after days)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) - boottime_offset_ticks() / os.sysconf("SC_CLK_TCK")


def boot_to_wall(stamp: float | None) -> float | None:
    """The moment `stamp` of this boot's clock (`boot_secs` then) in today's wall clock: a
    wall time recorded then is off by any step the clock took since; this is not."""
    return None if stamp is None else time.time() - (boot_secs() - stamp)


TWIN_SLACK_SECS = 60.0  # a registration up to this long after the host booted may be its last boot's (a clock stepped at boot)


def of_this_host(entry: RegistryEntry, here: tuple[str, str]) -> bool:
    """Whether `entry` is this host's (`here`: its identity), by the host it records (none: an
    older Stoker's, this host's), unless it was registered since this host booted by a
    supervisor of another boot: this host ran none then, so it is another host's of the same
    machine id and name (containers of two hosts without a machine id, given one host name,
    sharing a root; its task was LOST here, its entry pruned). Registered before this boot:
    this host's, from before a reboot, or another's: taken for this host's, as it was."""
    if not entry.of_host(here):
        return False
    if not (entry.host_id or entry.host_name) or not entry.supervisor_boot \
            or entry.supervisor_boot == boot_id():
        return True
    return entry.registered_wall <= (boot_to_wall(0.0) or 0.0) + TWIN_SLACK_SECS  # the host's boot


def supervisor_alive(entry: RegistryEntry) -> bool:
    """Whether `entry`'s supervisor runs: this host's only (another's pid means nothing here).
    An entry of this machine id and boot (`boot_id`: the same kernel) under another host name
    is this host's while its supervisor runs here, as this process sees its pid: the host was
    renamed since it started (`hostnamectl set-hostname`, DHCP; it keeps the name it read),
    whose live tasks were all another host's, never listed, judged or killed here. Another
    machine id's (a container's of this host) is not looked for: no /proc read each."""
    if entry.supervisor_boot and entry.supervisor_boot != boot_id():
        return False  # another boot's: gone, or another host's (no host name read for it)
    here = host_identity()
    return (entry.of_host(here) or (bool(entry.supervisor_boot) and entry.host_id == here[0])) \
        and is_alive(entry.supervisor_pid, entry.supervisor_start, entry.supervisor_boot)
