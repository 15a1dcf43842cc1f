"""Starting runs by `posix_spawn`, with the standard library only: before the supervisor
is loaded (the early start), the subreaper flag and a run (its watchdog: `watchdogsh`), and the record of
each run for the supervisor that adopts it; the supervisor's own runs as this process
(`spawn_in`, the same `spawn_run`), and the error of a spawn whose fork was refused as
Popen's names it (`unnamed`: no file); `die_with`, for the child that plans a first run
meanwhile (and `stoker inspect`'s); `one_heap`, one C heap for all of `stoker run`'s and
`stoker executor`'s threads; `trim_heap`, the C library's free heap pages given back
once the supervisor's start ends; and the room kept from then for the task's stop
(`keep_stop_room`, `let_go_stop_room`).

`executor/cli/launch.py` uses these in the first milliseconds of a `stoker run` whose plan
was kept (README "Start-up"); the supervisor (`supervisor.py`) adopts the runs, and the
watchdog's keeper replaces the early watchdog (`watchdogsh.retire`; `watchdogsh.spawn_watchdog`
starts it). They start processes exactly as
`spawn.fork_exec` and `watchdog.start_watchdog` do: `/bin/bash -c CMDLINE` (or the
watchdog's `/bin/sh`) in a session of its own, stdin /dev/null, stdout and stderr the run's
log files, SIGPIPE and SIGXFSZ back to their defaults (Python ignores them), and no
descriptor but those three: every descriptor this process opened is close-on-exec, and those
it inherited open for exec are made so before its first spawn (`shut_inherited`): a close in
posix_spawn's file actions cannot name one past the soft descriptor limit (EBADF, where a
parent's `ulimit -n` came after the descriptor).

A run also gets Stoker's stop signals (`STOP_SIGNALS`) at their defaults: the supervisor
handles them, so the runs it forks get them so (a handled signal is reset by exec) even when
Stoker was started with them ignored (a background job of a script ignores SIGINT); an
ignored one would stay ignored across exec. Any other signal ignored when Stoker started
stays ignored, for its runs as for these. One difference is glibc's: its posix_spawn leaves
the child's two signals it reserves for itself (32 and 33, below SIGRTMIN) ignored, and
`setsigdef` cannot name them. Programs do not use those two (glibc's and musl's threads,
and Go's runtime, install their own handlers for them); forking instead would cost each
early run some milliseconds.

`posix_spawn` has no working directory of its own: the early start moves this process into
the sandbox around the runs' spawns (no other thread runs then), and `watchdogsh.spawn_watchdog`
into `/` around its own.

The supervisor (`spawn.fork_run`) starts each run as this process (no user to switch to, no
`wrap`, every descriptor to dup from 3 up) by `spawn_in`, and any other by Popen. Both vfork
and exec; what posix_spawn leaves out is Popen's Python around the fork (the environment
encoded in Python, its error pipe, the Popen object: half of this process's CPU per run).
The thread that forks moves into the sandbox for the spawn alone and back, and its working
directory is its own (`own_cwd`: unshare(CLONE_FS), once per thread, at its first run), so
neither the process's directory nor another thread's moves but those of threads that thread
started after (they share it, for the spawn: no Stoker code resolves a relative path once
started, the sandbox and every path it opens are absolute or relative to a descriptor).
Where unshare is denied (a seccomp profile), or the sandbox cannot be entered, the run is
Popen's, as is its error; so is every run where this Python's posix_spawn cannot start a
session (NotImplementedError: built for a libc without POSIX_SPAWN_SETSID; the early start,
whose watchdog it starts first, is then given up, as for any error). The thread's umask is
a copy of the process's then (Stoker sets its umask before any run starts), and is its own
as its directory is: a run that must start with a umask of its own (a root role's under a
root executor, `RunAs.umask`: the agent's) is spawned when it is the thread's (an agent's
022), and Popen's otherwise (posix_spawn sets none, and changing the thread's would change
it for the threads it started, which share it). Its runs get Popen's signals
(`POPEN_DEFAULTS`): the stop signals are handled by then and exec resets a handled one;
glibc's 32 and 33 as above. The descriptors Stoker inherited open for exec are made
close-on-exec as the supervisor starts (`shut_inherited`, as the early start does): every
descriptor Stoker opens is close-on-exec (PEP 446), so none becomes inheritable after.

Raises OSError; no logging.
"""
from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # CPython's: `signal` adds enums (1.3 ms) for nothing here
import _thread
import os

from executor.procs.runenv import exec_text

TYPE_CHECKING = False  # not `typing`'s: the early start's modules load neither typing nor collections
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_PDEATHSIG = 1
_CLONE_FS = 0x200
_M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
STOP_ROOM_BYTES = 4 << 20  # a C heap block (64 KiB reads), an obmalloc arena (1 MiB), the lines: the stop's room
POPEN_DEFAULTS = (_signal.SIGPIPE, _signal.SIGXFSZ)  # what Popen's restore_signals resets
# What `stoker run` handles (`executor/local/run.py`, `_relay_signals`; SIGHUP only when it
# is not ignored, so an ignored one stays ignored for every run alike).
STOP_SIGNALS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGTSTP)


class EarlyRun:
    """One run the early start forked: what the supervisor checks before adopting it. Its
    environment is `runenv.run_env(task_env, marker, process, run)`; `task_env` is one dict
    shared by the runs started together (a copy each would be garbage left under the
    supervisor's modules: 0.4 MiB for 100 runs)."""

    __slots__ = ("process", "run", "pid", "cmdline", "task_env", "oom_kills")

    def __init__(self, process: str, run: int, pid: int, cmdline: str, task_env: dict[str, str],
                 oom_kills: int | None = None) -> None:
        self.oom_kills = oom_kills  # its memory cgroup's OOM kills as it was forked (`oomcount.py`)
        self.process = process
        self.run = run
        self.pid = pid
        self.cmdline = cmdline
        self.task_env = task_env


def set_subreaper() -> None:
    """Make this process a child subreaper (prctl). Raises OSError."""
    prctl, get_errno = _libc("prctl")
    if prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = get_errno()
        raise OSError(err, os.strerror(err))


def own_cwd() -> None:
    """Give the calling thread a working directory (and umask) of its own, a copy of the
    process's now: a `chdir` on it moves no other thread (unshare(CLONE_FS)). Raises OSError
    (a seccomp profile may deny unshare)."""
    unshare, get_errno = _libc("unshare")
    if unshare(_CLONE_FS) != 0:
        err = get_errno()
        raise OSError(err, f"unshare(CLONE_FS): {os.strerror(err)}")


def die_with(parent: int) -> None:
    """Make this process get SIGKILL when its parent ends, and end it now when `parent`
    already ended (it was re-parented before the call). Where prctl is denied (a container
    runtime's seccomp profile), a thread ends it instead, within 0.1 s of its parent's end."""
    try:
        prctl, get_errno = _libc("prctl")
        if prctl(_PR_SET_PDEATHSIG, _signal.SIGKILL, 0, 0, 0) != 0:
            err = get_errno()
            raise OSError(err, os.strerror(err))
    except OSError:
        _watch_parent(parent)
    if os.getppid() != parent:
        os._exit(1)


def _watch_parent(parent: int) -> None:
    """A thread that ends this process (status 1) once its parent pid is no longer `parent`."""
    import threading
    import time

    from executor.logs import start_thread  # (and `logging`: only where prctl is denied)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.1)
        os._exit(1)

    start_thread(threading.Thread(target=watch, name="stoker-parent-watch", daemon=True))


def _libc(name: str) -> tuple[Callable[..., int], Callable[[], int]]:
    """The C library's function `name` (prctl, unshare: int arguments, an int result) and
    errno. Through `_ctypes`, the C module under `ctypes`: `ctypes` itself costs `stoker run`
    4 ms before its first fork; the few lines of it needed here are these (and `ctypes` where
    they do not work). Raises OSError."""
    try:
        import _ctypes

        class _Int(_ctypes._SimpleCData):
            _type_ = "i"

        class _Function(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = _Int

        address = _ctypes.dlsym(_ctypes.dlopen(None, os.RTLD_NOW), name)  # type: ignore[arg-type]
        return _Function(address), _ctypes.get_errno
    except (ImportError, AttributeError, TypeError):
        return _libc_by_ctypes(name)
    except Exception as exc:  # dlsym: no such function; or an audit hook refusing ctypes (sitecustomize)
        raise OSError(f"{name}: {exc}") from None


def _libc_by_ctypes(name: str) -> tuple[Callable[..., int], Callable[[], int]]:
    """`_libc` through `ctypes`; an OSError too where this Python has no `ctypes` (built
    without libffi): then there is no C call, as where the C library lacks the function."""
    try:
        import ctypes

        return getattr(ctypes.CDLL(None, use_errno=True), name), ctypes.get_errno
    except Exception as exc:  # no ctypes (built without libffi), no such function, a refusing hook
        raise OSError(f"{name}: {exc}") from None


def one_heap() -> None:
    """Every thread of this process allocates from the C library's one main heap (glibc's
    `mallopt(M_ARENA_MAX, 1)`), asked before the first thread starts: a thread's first
    `malloc` otherwise makes it an arena of its own (4 KiB resident each, five in an idle
    `stoker run`: 20 KiB of USS; 0.29 MiB in all for `stoker executor`'s, whose driver
    reads the agent's stream on one), for allocations the GIL serializes anyway. Nothing
    where the C library has no such call (musl, which has no arenas). A fork keeps the
    setting (the planning child), an exec does not: a task's processes have their own."""
    try:
        mallopt, _ = _libc("mallopt")
    except OSError:
        return
    mallopt(_M_ARENA_MAX, 1)


def trim_heap() -> None:
    """Give the C library's free heap pages back to the kernel (glibc's `malloc_trim`): what
    the start made and freed (the environments of 100 runs read at once as they entered the
    task's cgroup, say) otherwise stays resident for the supervisor's life. Nothing where
    the C library has no such call (musl)."""
    try:
        trim, _ = _libc("malloc_trim")
    except OSError:
        return
    trim(0)


# `keep_stop_room`'s mapping, until the stop lets it go: its address and the `munmap` to call, made
# as it was kept (making the calls again at the stop needs the memory the stop has none of)
_stop_room: tuple[int, Callable[..., int]] | None = None
# Held while the room is kept or let go: a thread start handed it (`logs.room_kept`, from any
# thread) and the owner's stop let it go at once, and the second took None (a TypeError)
_room_lock = _thread.allocate_lock()


def _new_room_lock() -> None:
    """A forked child's own `_room_lock`, free: a fork copies only the forking thread, and the
    lock another held at the fork stayed held, the child's let-go waiting on it for ever."""
    global _room_lock
    _room_lock = _thread.allocate_lock()


os.register_at_fork(after_in_child=_new_room_lock)
_MAP_ROOM = (0, 0x02 | 0x20 | 0x4000)  # PROT_NONE; MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE (mman.h)


def start_ended(*, stopping: bool) -> None:
    """The start's end (the early start's runs the first step did not take given up): the
    heap trimmed (`trim_heap`), and room kept for the stop (`keep_stop_room`) unless it has
    begun (`stopping`: the room would be taken from it)."""
    trim_heap()
    if not stopping:
        keep_stop_room()


def keep_stop_room() -> None:
    """Keep STOP_ROOM_BYTES of the address space for the task's stop, as the start ends
    (after `trim_heap`): a stop whose process reached its address-space limit (`ulimit -v`,
    nothing more mapped) meanwhile needs fresh pages all the same (a cgroup file's read, a
    process list, its lines), and ended FAILED with a MemoryError where the trim had left
    no free heap. The room is a mapping of its own that nothing reads (`mmap`, PROT_NONE):
    it costs address space (VmSize), no memory, and letting it go gives the address space
    back whatever the C heap holds (a heap block, where glibc's mmap threshold had risen past
    its size, stayed mapped under a block above it). None kept where there is no room for
    it, or no `mmap` to call: the stop has what is left, as before."""
    global _stop_room
    with _room_lock:
        if _stop_room is not None:
            return
        try:
            mmap, munmap = _room_calls()
        except OSError:
            return  # none kept
        address = mmap(0, STOP_ROOM_BYTES, *_MAP_ROOM, -1, 0)
        if address in (-1, 0):  # MAP_FAILED (ENOMEM: no room)
            return
        _stop_room = address, munmap
        from executor import logs

        logs.room_kept = let_go_stop_room  # a thread start the limit refuses without it has it first


def let_go_stop_room() -> None:
    """Give the room `keep_stop_room` kept back to the address space: the task's stop begins,
    or a thread that has no room without it starts (`logs.start_thread`): from any thread,
    once (`_room_lock`: two at once, the room is unmapped by one, the other has nothing to do)."""
    global _stop_room
    with _room_lock:
        if _stop_room is None:
            return
        from executor import logs

        logs.room_kept = None
        (address, munmap), _stop_room = _stop_room, None
        munmap(address, STOP_ROOM_BYTES)


def _room_calls() -> tuple[Callable[..., int], Callable[..., int]]:
    """The C library's `mmap` and `munmap`, an address passed and returned as a 64-bit
    number (`_libc`'s functions take and give a C int). Raises OSError."""
    try:
        import _ctypes

        class _Int(_ctypes._SimpleCData):
            _type_ = "i"

        class _Long(_ctypes._SimpleCData):
            _type_ = "l"

        class _Function(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL
            _restype_ = _Long

        libc = _ctypes.dlopen(None, os.RTLD_NOW)  # type: ignore[arg-type]
        mmap, munmap = _Function(_ctypes.dlsym(libc, "mmap")), _Function(_ctypes.dlsym(libc, "munmap"))
        mmap.argtypes = (_Long, _Long, _Int, _Int, _Int, _Long)
        munmap.argtypes = (_Long, _Long)
    except Exception as exc:  # no `_ctypes` (built without libffi), no such function, a refusing audit hook
        raise OSError(f"mmap: {exc}") from None
    return mmap, munmap


def shut_inherited() -> None:
    """Make this process's descriptors from 3 up that an exec would pass on (inherited open
    for exec from whoever started it) close-on-exec: no child it execs gets one, as Popen's
    close_fds closed them."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd < 3:
            continue
        try:
            if os.get_inheritable(fd):
                os.set_inheritable(fd, False)
        except OSError:
            continue  # the listing's own descriptor, closed by now


def spawn_run(cmdline: str, env: Mapping[str, str], *, stdin: int, stdout: int | None, stderr: int | None,
              defaults: tuple[int, ...] = POPEN_DEFAULTS + STOP_SIGNALS) -> int:
    """`/bin/bash -c CMDLINE` in a session of its own, in the calling thread's working
    directory (the caller's `chdir` into the sandbox, once for the runs started together),
    the signals `defaults` at their defaults (the early start's: `STOP_SIGNALS` too; the
    supervisor's, whose stop signals are handled by then: `POPEN_DEFAULTS`), stdout and
    stderr none: ours. Each descriptor given is from 3 up. Its pid."""
    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2))
               if fd is not None]
    return os.posix_spawn("/bin/bash", ["/bin/bash", "-c", exec_text(cmdline)], env, file_actions=actions,
                          setsid=True, setsigdef=defaults)


def spawn_in(cwd: str, cmdline: str, env: Mapping[str, str], *, stdin: int, stdout: int | None,
             stderr: int | None, umask: int = -1) -> int | None:
    """`spawn_run` in `cwd` for the supervisor (its runs as this process), which must start
    with `umask` (-1: any, the process's): its pid, or None when it must be Popen's (this
    thread's directory cannot be its own, `cwd` cannot be entered: Popen says why; or
    `umask` is not the thread's, which posix_spawn cannot set). The thread is in `cwd` for
    the spawn only. Raises OSError, naming `/bin/bash` as Popen's does: not for a fork
    refused (EAGAIN, ENOMEM). Where this Python's posix_spawn cannot start a session
    (NotImplementedError: a libc without POSIX_SPAWN_SETSID), every run is Popen's."""
    global _spawns
    home = _home() if _spawns else None
    if home is None or umask not in (-1, home.umask):
        return None
    try:
        os.chdir(cwd)
    except OSError:
        return None
    try:
        return spawn_run(cmdline, env, stdin=stdin, stdout=stdout, stderr=stderr, defaults=POPEN_DEFAULTS)
    except NotImplementedError:  # raised before any fork: nothing started
        _spawns = False
        return None
    except OSError as e:
        raise unnamed(e) from None
    finally:
        home.back()


def unnamed(error: OSError) -> OSError:
    """posix_spawn's `error`, without the program it names when the fork was refused (EAGAIN,
    ENOMEM: a pids limit, `ulimit -u`, no memory), as Popen's error names none, or when no
    descriptor was left (EMFILE, ENFILE: a file Popen's module opened at its first load):
    the file is not at fault."""
    import errno  # an error's only

    if error.errno in (errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE):
        return OSError(error.errno, error.strerror)
    return error


def failed_in(error: OSError) -> str:
    """' in FILE' for a start's `error` that names a file at fault (`unnamed`), else ''."""
    return f" in {name}" if (name := unnamed(error).filename) else ""


class _Home:
    """The directory a thread forked from (an O_PATH descriptor), closed with the thread, and
    its umask (its own too, since unshare(CLONE_FS): the process's then)."""

    __slots__ = ("fd", "umask")

    def __init__(self, fd: int, umask: int) -> None:
        self.fd = fd
        self.umask = umask

    def back(self) -> None:
        """The thread back in it; a failure is no error (the run is started, the caller's
        whatever this says; the thread's next spawn moves it anyway)."""
        try:
            os.fchdir(self.fd)
        except OSError:
            return

    def __del__(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            return


_threads = _thread._local()  # each thread's `_Home`, or None: its directory cannot be its own
_spawns = True  # False: posix_spawn cannot start a run's session here (`spawn_in`)


def _home() -> _Home | None:
    """The calling thread's home, its working directory made its own (`own_cwd`) at the
    first call; None when that cannot be (unshare denied: then it never is, Popen for that
    thread; no descriptor to keep it, EMFILE: not this time)."""
    home: _Home | None | bool = getattr(_threads, "home", False)
    if not isinstance(home, bool):
        return home
    try:
        fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        own_cwd()
    except OSError:
        os.close(fd)
        _threads.home = None
        return None
    # read as umask(2) reads it, set and put back: no other thread shares it yet
    umask = os.umask(0o077)
    os.umask(umask)
    home = _threads.home = _Home(fd, umask)
    return home
