"""`log_event()` (from config/logline.py): one state change as one log line, `event key=value
...`, for every layer; `stoker run`'s screen line; and how every thread is started.

How lines are rendered (text, or one JSON object per line with `--log-format json`) is
configured only by the CLI (`executor/cli/logsetup.py`); modules only call `log_event()`
(tests/unit/test_log_lines.py holds every module to it).

`stoker run`'s console keeps a live view on the terminal's last line, without a newline.
It registers it here (`keep_screen_line`), and the log handler writes each record inside
`above_screen_line()`: the view is cleared first and drawn again after, under one lock the
console's own writes take too (`screen_lock`), so a record (text or JSON) never starts on
the view's line and no two writers interleave on the terminal.

For `stoker run`, both write through one spool (`executor/spool.py`, loaded by it only):
`drain_spool` here gives it a bounded time at exit, where one was made.

`start_thread`: how every thread Stoker starts is started (tests/unit/test_thread_starts.py
holds every module to it; the health loop is handed it). Under an address-space limit (ulimit
-v) the kernel may map a thread's stack and refuse the thread's first mappings (its frames' data
stack, an obmalloc arena): it dies before it runs any Python, and `Thread.start()` waits for it
for good, in a lock no signal ends (only kill -9 stopped `stoker run`). Each start reserves its
room under a lock and starts outside it: one that still hangs holds up no other. Without a
limit, one getrlimit.

Never pass a secret (the agent's auth token) to a logger: nothing here can scrub it.
"""
from __future__ import annotations

import contextlib
import errno
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from config.logline import log_event as log_event  # every layer's, re-exported

if TYPE_CHECKING:  # for the type checker only: no class every process holds
    from typing import Protocol

    class ScreenLine(Protocol):
        """A line kept at the bottom of the terminal (the console's live view)."""

        def hide(self) -> None: ...

        def show(self) -> None: ...


# Held by whoever writes to the terminal the screen line is on. Re-entrant: the console may
# log (a lost stdout) while it holds it.
screen_lock = threading.RLock()
_screen_line: ScreenLine | None = None


def no_room(exc: BaseException) -> str | None:
    """What a thread, process, descriptor or memory that could not be had at all says, as one
    line (the Mesos pids isolator's limit covers the executor too); None for anything else."""
    if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        try:  # refused by `start_thread`: the figures it saw
            if isinstance(exc, NoRoomForThread):
                return _no_room_for_thread(exc.limit, exc.mapped, exc.reserved)
            return no_thread()
        except (ImportError, MemoryError):  # not even to look: the words made at import
            return _NO_THREAD_NO_MEMORY
    if isinstance(exc, MemoryError):
        try:
            return memory_refused()
        except (ImportError, MemoryError):  # not even to look: the words made at import
            return _NO_MEMORY
    if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
        whose = "ulimit -n" if exc.errno == errno.EMFILE else "the host's limit, fs.file-max"
        return f"no file descriptor is left: {exc.strerror} ({whose})"
    if isinstance(exc, OSError) and exc.errno == errno.EAGAIN:
        return (f"{exc.strerror}: the process limit may be reached (a pids cgroup's "
                "pids.max, or ulimit -u)")
    return None


_NO_MEMORY = "no memory could be had (MemoryError)"
_NO_THREAD_NO_MEMORY = "no thread could be started: no memory could be had (MemoryError)"


def no_thread() -> str:
    """Why no thread could be started. The address-space limit is looked at first: under
    it, the look for a seccomp profile's clone3 (ctypes, a shared object to map) is refused
    too (was: an ImportError, 'failed to map segment from shared object', in place of the
    line); ImportError or MemoryError when even that look finds no memory."""
    full = address_space_full()
    if full is not None:
        return full
    if clone3_denied():
        return ("no thread could be started: this host's seccomp profile denies the clone3 "
                "system call (EPERM), which the C library starts threads with (glibc 2.34 and "
                "later); a profile that answers ENOSYS for it lets glibc use clone (Docker "
                "20.10.10 and later do)")
    return "no thread could be started: the process limit is reached (a pids cgroup's pids.max, or ulimit -u)"


def memory_refused() -> str | None:
    """Why an allocation was refused (a MemoryError) when the host is to blame: the
    address-space limit (ulimit -v), the data-size limit (ulimit -d), or strict overcommit
    (vm.overcommit_memory=2). None under none of them: the kernel then refuses only a
    request larger than all its memory and swap (a host short of memory calls the OOM
    killer instead), so the request was a bug's, Stoker's own, with its traceback (was: one
    line blaming the host, exit 2, for `bytearray(2**50)`)."""
    import resource

    limit, mapped = address_space()
    if limit is not None:
        return (f"no memory could be had (MemoryError): the address-space limit (ulimit -v: "
                f"{limit // 1024} KiB) is reached ({_kib(mapped)} mapped)")
    data = resource.getrlimit(resource.RLIMIT_DATA)[0]
    if data != resource.RLIM_INFINITY:
        return (f"no memory could be had (MemoryError): the data-size limit (ulimit -d: "
                f"{data // 1024} KiB) is reached")
    try:
        with open("/proc/sys/vm/overcommit_memory", "rb") as setting:
            strict = setting.read().strip() == b"2"
    except OSError:  # no /proc: the host may be the one to blame
        strict = True
    if strict:
        return ("no memory could be had (MemoryError): the host refused an allocation (no "
                "memory left under vm.overcommit_memory=2)")
    return None


# What a new thread maps past its stack before it runs any Python: an obmalloc arena (1 MiB), its
# frames' data stack (16 KiB in CPython 3.11), the stack's guard page, the C heap's growth for
# its state (128 KiB); twice that, for what other threads map meanwhile (starts reserve theirs).
FIRST_ALLOCATIONS_BYTES = 2 * 1024 * 1024
_start_lock = threading.RLock()  # a look and reservation; re-entrant: a signal handler may start a thread
# Each start under way (`start_thread`): its thread and the room it reserved, counted until the
# thread runs (`ident` set: its stack and first allocations are in what is mapped), not until
# the start returns (its stack counted twice), nor to a ceiling of what was mapped (what the
# process mapped meanwhile for anything else filled it as if the thread had).
_under_way: list[tuple[threading.Thread, int]] = []
# What glibc gives a thread's stack when RLIMIT_STACK is unlimited (x86_64's and arm64's
# ARCH_STACK_DEFAULT_SIZE is 2 MiB or more: the smallest, not to blame a limit that had room).
_UNLIMITED_STACK_BYTES = 2 * 1024 * 1024


class NoRoomForThread(RuntimeError):
    """A start `start_thread` refused, with the figures it saw (mapped None: not read), which
    `no_room` gives, not a later look's."""

    def __init__(self, limit: int, mapped: int | None, reserved: int = 0) -> None:
        super().__init__("can't start new thread")
        self.limit = limit
        self.mapped = mapped
        self.reserved = reserved


# Lets go of address space kept for later (`earlyfork.keep_stop_room`: the task's stop's),
# for a thread start the limit refuses without it (None: none kept): a disk sample's or a
# health check's thread works now; a stop with less room may still end KILLED.
room_kept: Callable[[], None] | None = None


def start_thread(thread: threading.Thread) -> None:
    """`thread.start()`, or `NoRoomForThread` (a RuntimeError, which every caller handles as
    pthread's refusal) when what is mapped, the room of the starts under way whose thread has
    not run yet, the thread's stack and `FIRST_ALLOCATIONS_BYTES` do not fit below the limit:
    never a start that waits for good. The look and the reservation are one step (two looks
    at once both saw room for one thread); the start is outside it, so a start that still
    hangs keeps its own reservation and holds up no other start (was: the lock, every start)."""
    import resource

    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:  # no lock: nothing to run out of
        thread.start()
        return
    try:
        reservation = _reserve_room(limit, thread)
    except NoRoomForThread:
        if (give := room_kept) is None:
            raise
        give()  # the room kept for the task's stop: this thread's work is now, a stop may not come
        reservation = _reserve_room(limit, thread)
    try:
        thread.start()
    finally:  # started (its stack and first allocations now in what is mapped), or refused
        _under_way.remove(reservation)  # one list operation, atomic: no lock


def _reserve_room(limit: int, thread: threading.Thread) -> tuple[threading.Thread, int]:
    """Reserve `thread`'s room below `limit` (the entry added to `_under_way`), or
    `NoRoomForThread` (with the room the other starts hold: their threads not run yet)."""
    with _start_lock:
        mapped, reserved = None, 0
        with contextlib.suppress(MemoryError):  # not even to look: a thread would have less still
            others = tuple(_under_way)  # a copy: a start that returns removes its entry meanwhile;
            # looked at before what is mapped: a thread made between is counted twice, not missed
            reserved = sum(room for started, room in others if started.ident is None)
            mapped = address_space()[1]
            room = room_for_thread()
            if mapped is None or mapped + reserved + room <= limit:
                reservation = (thread, room)
                _under_way.append(reservation)  # (growing the list may be refused too)
                return reservation
        raise NoRoomForThread(limit, mapped, reserved)


def thread_stack_bytes() -> int:
    """The stack the C library maps for a new thread (`threading.stack_size()`, else ulimit -s)."""
    import resource

    stack = threading.stack_size() or resource.getrlimit(resource.RLIMIT_STACK)[0]
    return _UNLIMITED_STACK_BYTES if stack == resource.RLIM_INFINITY else stack


def room_for_thread() -> int:
    """The address space a new thread needs below the limit before it runs any Python."""
    return thread_stack_bytes() + FIRST_ALLOCATIONS_BYTES


def address_space() -> tuple[int | None, int | None]:
    """This process's address-space limit (ulimit -v, RLIMIT_AS; None: not set) and what it
    maps (/proc/self/status's VmSize; None: not read), in bytes."""
    import resource

    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    try:
        with open("/proc/self/status", "rb") as status:
            sizes = [line.split()[1] for line in status if line.startswith(b"VmSize:")]
        mapped: int | None = int(sizes[0]) * 1024
    except (OSError, IndexError, ValueError):  # no /proc (or no memory to read it with)
        mapped = None
    return (None if limit == resource.RLIM_INFINITY else limit), mapped


def _kib(size: int | None) -> str:
    return "an unknown size" if size is None else f"{size // 1024} KiB"


def address_space_full() -> str | None:
    """Why no thread could be started when the address-space limit (ulimit -v, RLIMIT_AS) is
    the cause: what this process maps leaves less than a thread's stack and its first
    allocations below it (`room_for_thread`, as `start_thread` asks). pthread says EAGAIN for
    a stack it cannot map as for a full pids cgroup, so Python's error is the same; without
    this, `stoker run` under `ulimit -v` blamed pids.max. None when the limit leaves room."""
    limit, mapped = address_space()
    if limit is None:
        return None
    if mapped is not None and mapped + room_for_thread() <= limit:
        return None
    return _no_room_for_thread(limit, mapped)


def _no_room_for_thread(limit: int, mapped: int | None, reserved: int = 0) -> str:
    held = f", {reserved // 1024} KiB held by other starts under way" if reserved else ""
    return (f"no thread could be started: the address-space limit (ulimit -v: {limit // 1024} "
            f"KiB) leaves no room for a thread's {thread_stack_bytes() // 1024} KiB stack and "
            f"{FIRST_ALLOCATIONS_BYTES // 1024} KiB for its first allocations ({_kib(mapped)} "
            f"mapped already{held})")


_SYS_CLONE3 = 435  # the same number on every architecture that has it (Linux 5.3)


def clone3_denied() -> bool:
    """Whether a seccomp filter answers clone3 with EPERM: glibc 2.34 and later then start
    no thread and spawn no process (an older Docker's default profile, before 20.10.10). Asked
    with a size too small to clone anything, which the kernel itself answers with EINVAL."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        failed = libc.syscall(_SYS_CLONE3, None, 0) == -1
    except (AttributeError, OSError):  # no syscall() in this C library
        return False
    return failed and ctypes.get_errno() == errno.EPERM


def keep_screen_line(line: ScreenLine | None) -> None:
    """`line` is now at the bottom of the terminal (None: no line any more)."""
    global _screen_line
    with screen_lock:
        _screen_line = line


def screen_line_kept() -> bool:
    """Whether a screen line is at the bottom of the terminal (`stoker run`'s live view)."""
    return _screen_line is not None


@contextlib.contextmanager
def above_screen_line() -> Iterator[None]:
    """Write something of your own to the terminal: the screen line is cleared before and
    drawn again after, and nobody else writes meanwhile."""
    with screen_lock:
        line = _screen_line
        if line is not None:
            line.hide()
        try:
            yield
        finally:
            if line is not None:
                line.show()


def drain_spool(idle_secs: float = 2.0) -> bool:
    """At exit: False when what `stoker run` spooled could not all be written
    (`executor.spool.drain_spool`); True at once in a process that never loaded the spool."""
    spooling = sys.modules.get("executor.spool")
    return spooling is None or spooling.drain_spool(idle_secs)
