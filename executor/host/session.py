"""A supervisor's hold on one sandbox: its lock, its registry entry and its control socket.

`HostSession.open(sandbox, ...)` makes `.stoker/` (0700), takes the sandbox lock (another
live supervisor there: `SandboxBusy`, nothing else happens), writes the registry entry
(unless the task starts at once: `task_started` writes it then) and starts the control server; `close()` undoes all three, leaving the entry marked ended.
Neither the registry nor the control socket may stop a launch: each failure is one WARNING
line and the task runs without it. The registry's expired entries are pruned when the
session closes (and by every reader: `stoker ps`, `stoker status`, `stoker observe`), not
while the supervisor starts: its writes before the first fork read no other entry.

One session per sandbox per process, shared: a second `open` of the same sandbox in the
same process returns the same session, counted, and the last `close` ends it. So the
front-end opens it early, to refuse a held sandbox at once (`stoker run` before its first
attempt, `stoker executor` before it subscribes), and each task owner opens it again when
its task starts (`executor/task/wiring.py`), without taking the lock twice.

While a task runs, `task_started` has given the session the owner's `post`: a control
request becomes a `KillRequested` (reason `OPERATOR_KILL`) or a `RestartRequested` on the
owner's queue, carrying the connection's replier; the owner answers. Between tasks a kill
goes to the front-end's hooks (`stoker run` stops) and a restart is refused. The control
thread only parses and posts: it never changes task state and never signals a process.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import assert_never

import attrs

from config.registry import RegistrySettings
from config.words import quoted
from executor.events import ControlReply, KillRequested, Replier, RestartRequested
from executor.host.control import ControlServer
from executor.host.controlwire import ControlRequest, KillControl, RestartControl
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import host_identity, own_identity
from executor.host.lock import SandboxBusy, SandboxLock
from executor.host.registry import Registry
from executor.host.sandbox import LOCK_FILE, open_stoker_dir, sandbox_path
from executor.logs import log_event, no_room
from executor.procs import saferead, sandboxfs

logger = logging.getLogger(__name__)

OPERATOR_KILL = "killed by the operator (stoker kill)"

# A front end's hook for an operator's kill (`HostSession.on_operator_kill`): (reached,
# grace_secs) -> the answer when it stops what no owner listening got, else None.
KillHook = Callable[[bool, float | None], str | None]

__all__ = ["OPERATOR_KILL", "HostSession", "SandboxBusy"]


class HostSession:
    _guard = threading.Lock()
    _open: dict[tuple[int, int], HostSession] = {}

    def __init__(self, sandbox: Path, key: tuple[int, int], registry: Registry,
                 entry: RegistryEntry) -> None:
        self.sandbox = sandbox
        self._key = key
        self._registry = registry
        self._entry = entry
        self._refs = 1
        self._lock = threading.Lock()  # guards _post, _entry and the hooks
        self._post: Callable[[object], None] | None = None
        self._kill_hooks: list[KillHook] = []
        self._stoker_dir = -1
        self._sandbox_lock: SandboxLock | None = None
        self._server: ControlServer | None = None

    @classmethod
    def open(cls, sandbox: str | os.PathLike[str], settings: RegistrySettings | None = None,
             front_end: FrontEnd = FrontEnd.EXECUTOR, *, held_lock: int | None = None,
             on_operator_kill: KillHook | None = None, register: bool = True) -> HostSession:
        """This process's session of `sandbox` (counted; a new one registers in `settings`'s
        registry, by default the one the environment names). Raises SandboxBusy, or OSError
        when `.stoker/` or its lock file cannot be made. `held_lock`: the sandbox's lock file,
        already locked by this process (an early start's), which the session takes over.
        `on_operator_kill`: a hook (`on_operator_kill`) in place before the socket serves.
        `register=False`: a new session's entry is not written here, for a caller that calls
        `task_started` at once, which writes it (one write before the task's first fork, not
        two); a session already open was registered by whoever opened it."""
        path = sandbox_path(sandbox)
        st = os.stat(path)
        key = (st.st_dev, st.st_ino)
        with cls._guard:
            session = cls._open.get(key)
            if session is not None:
                session._refs += 1
                if on_operator_kill is not None:
                    session.on_operator_kill(on_operator_kill)
                return session
            entry = _own_entry(path, front_end)
            registry = Registry(settings or RegistrySettings.from_env(os.environ))
            session = cls(path, key, registry, entry)
            if on_operator_kill is not None:
                session._kill_hooks.append(on_operator_kill)
            session._acquire(front_end, held_lock)
            cls._open[key] = session
        if register:
            session._registry.write(session._entry, prune=False)  # the launch does not read every entry
        try:
            session._start_control()
        except BaseException as exc:  # no thread could be started: the entry says why it ended
            session.close(stopped_on(exc))
            raise
        return session

    def _acquire(self, front_end: FrontEnd, held_lock: int | None) -> None:
        try:
            self._stoker_dir = open_stoker_dir(self.sandbox, create=True)
        except BaseException:
            if held_lock is not None:
                os.close(held_lock)
            raise
        # The registry entry pins this .stoker: readers trust no other (sandboxfs.check_pinned).
        self._entry = attrs.evolve(self._entry, stoker_dir=sandboxfs.dir_id(self._stoker_dir))
        try:
            if held_lock is not None:
                self._holds(held_lock)
            self._sandbox_lock = SandboxLock.acquire(
                self._stoker_dir, str(self.sandbox), own_identity(), front_end.value, time.time(),
                time.clock_gettime(time.CLOCK_BOOTTIME), held_fd=held_lock)
        except BaseException:
            os.close(self._stoker_dir)
            raise

    def _holds(self, held_lock: int) -> None:
        """Raise UnsafePath (closing `held_lock`) unless the `.stoker` just opened holds the
        lock file an early start locked: its runs, started before, may have renamed that
        `.stoker` and put another in its place, which this session would pin (and its task
        write its checkpoint into) while the sandbox's lock is in the other."""
        try:
            here = os.stat(LOCK_FILE, dir_fd=self._stoker_dir, follow_symlinks=False)
            held = os.fstat(held_lock)
            same = (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)
        except OSError:
            same = False
        if not same:
            os.close(held_lock)
            raise sandboxfs.UnsafePath(f"{self.sandbox}/.stoker is not the directory this start made and "
                                       "locked (the task's early runs may have put another in its place)")

    def _start_control(self) -> None:
        server = ControlServer(self._stoker_dir, self._on_request, label=self.sandbox.name)
        try:
            server.start()
        except OSError as exc:
            server.close()
            log_event(logger, logging.WARNING, "control_unavailable", sandbox=self.sandbox,
                      error=saferead.describe(exc),
                      consequence="stoker kill and stoker restart cannot reach this supervisor")
            return
        self._server = server

    def close(self, reason: str = "") -> None:
        """One holder lets go; the last one stops the control socket, marks the registry
        entry ended (with `reason`, an error it stopped on, if given) and releases the sandbox."""
        with self._guard:
            if self._refs <= 0:
                return  # closed already
            self._refs -= 1
            if self._refs > 0:
                return
            del self._open[self._key]
        if self._server is not None:
            self._server.close()
        with self._lock:
            self._entry = attrs.evolve(self._entry, ended_wall=time.time(), ended_reason=reason,
                                       host_name=host_identity()[1])  # the host renamed since: its name now
            entry = self._entry
        self._registry.write(entry)
        if self._sandbox_lock is not None:
            self._sandbox_lock.release()
        os.close(self._stoker_dir)

    # ---- the task ----

    @property
    def pinned(self) -> str:
        """The `.stoker` directory this session holds (`sandboxfs.dir_id`), which its registry
        entry names: readers trust no other."""
        with self._lock:
            return self._entry.stoker_dir

    def stoker_dir(self) -> int:
        """A new fd (the caller closes it) of the `.stoker` directory this session pinned and
        locked: what the task's owner writes there goes through it, never by path, so a
        task that renamed `.stoker` and put a symlink or a directory of its own in its place
        redirects nothing. Raises OSError (ValueError once closed)."""
        with self._guard:
            if self._refs <= 0:
                raise ValueError(f"the session of {self.sandbox} is closed")
            return os.dup(self._stoker_dir)

    def task_started(self, *, task_id: str, job_key: str, label: str, marker: str,
                     post: Callable[[object], None]) -> None:
        """A task runs here now: list it (without pruning: see the module docstring), and
        send control requests to `post`."""
        with self._lock:
            self._post = post
            self._entry = attrs.evolve(self._entry, task_id=task_id, job_key=job_key,
                                       label=label, marker=marker, host_name=host_identity()[1], ended_state="",
                                       earlier_task_ids=self._entry.next_task(task_id))
            entry = self._entry
        self._registry.write(entry, prune=False)

    def task_ended(self, recorded_end: str = "") -> None:
        """The task's owner is done: requests no longer reach it (none is posted once this
        returns: the owner empties its queue after). `recorded_end`: its terminal state, its
        record written in the checkpoint ("": not), which the entry keeps (`ended_state`)."""
        with self._lock:
            self._post = None
            self._entry = attrs.evolve(self._entry, ended_state=recorded_end)

    def on_operator_kill(self, hook: KillHook) -> None:
        """Call `hook(reached, grace_secs)` (from the control thread, under the session's
        lock: it only sets flags and posts) whenever an operator asks for a kill, before the
        request goes on; `reached`: a task's owner listens and gets the request. When none
        does, the front-end's hook is what stops it, including an owner made but not
        listening yet (its adapter starting), which would otherwise run on, unkilled: the
        hook returns the operator's answer then (None: it had nothing to stop)."""
        with self._lock:
            self._kill_hooks.append(hook)

    def _on_request(self, request: ControlRequest, reply: Replier) -> None:
        # Posted under the lock `task_ended` and `task_started` take: once `task_ended`
        # returns, nothing more reaches the owner's queue, so the owner's close, which empties
        # it after, answers every request posted (one posted after that emptying would wait
        # unanswered); and the hooks learn, in the same hold, whether an owner got it.
        with self._lock:
            post, taken = self._post, None
            if isinstance(request, KillControl):
                for hook in self._kill_hooks:
                    taken = hook(post is not None, request.grace_secs) or taken
            if post is not None:
                match request:
                    case KillControl(grace_secs=grace):
                        post(KillRequested(OPERATOR_KILL, grace, time.monotonic(), reply=reply))
                    case RestartControl(process=process):
                        post(RestartRequested(process, time.monotonic(), reply=reply))
                    case _:
                        assert_never(request)
                return
        match request:
            case KillControl() if taken is not None:
                reply(ControlReply(ok=True, done=True, message=taken))
            case KillControl():
                reply(ControlReply(ok=False, done=True, message="no task is running under this supervisor"))
            case RestartControl():
                reply(ControlReply(ok=False, done=True, message=(
                    "no task is running under this supervisor (between attempts)")))
            case _:
                assert_never(request)


def stopped_on(exc: BaseException | None) -> str:
    """What a registry entry keeps of the error its supervisor stopped on (`close`'s reason):
    `cannot go on: ...` where no thread, process, descriptor or memory could be had (as the
    `stoker: error:` line says it), "" for anything else or none."""
    why = no_room(exc) if isinstance(exc, Exception) else None
    return f"cannot go on: {why}" if why else ""


def _own_entry(sandbox: Path, front_end: FrontEnd) -> RegistryEntry:
    """The registry entry of this process's session of `sandbox`, as it registers now."""
    me, me_host = own_identity(), host_identity()
    return RegistryEntry(sandbox=str(sandbox), supervisor_pid=me.pid,
                         supervisor_start=me.start_ticks, supervisor_boot=me.boot_id,
                         front_end=front_end, registered_wall=time.time(),
                         host_id=me_host[0], host_name=me_host[1])


def sandbox_unusable(sandbox: Path | str, exc: OSError) -> str:
    """What a sandbox whose `.stoker` directory or lock file could not be made, opened or
    written says, in one line naming them (a full disk, a read-only file system); an
    UnsafePath says its own words. `stoker executor` said '[Errno 28] No space left on
    device' alone, naming nothing, where `stoker run` said this."""
    where = f"cannot use sandbox {quoted(str(sandbox))}"
    if exc.errno is None:
        return f"{where}: {exc}"
    return (f"{where}: its .stoker directory or its lock file (.stoker/{LOCK_FILE}): "
            f"{sandboxfs.describe_os_error(exc)}")
