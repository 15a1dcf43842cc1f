"""`stoker kill SANDBOX|TASK_ID [--grace SECS]` and `stoker restart SANDBOX|TASK_ID PROCESS`.

Both talk to the task's running supervisor through its control socket
(`executor/host/controlclient.py`), never to the task's processes: the supervisor does what a
Mesos KILL does (lifecycle endpoints, SIGTERM, SIGKILL of every tree after the grace, the
final processes) or restarts one process (its run stopped, the next started at once,
counted as neither a failure nor a loss). The supervisor is the live holder of the
sandbox's lock; its socket must belong to it (`SO_PEERCRED`).

`kill` prints the supervisor's answers and waits for the task's end: exit 0 once it ended,
1 when it was refused or the supervisor went away first. `restart` prints the answers and
waits for the new run: exit 0 with its run number and pid, 1 when refused or the supervisor
went away first (an error line says so, and what the task is now). No supervisor
(gone, LOST, never there): one `stoker: error:` line and exit 1. A supervisor that is
stopped (SIGSTOP, a debugger) answers only once continued: a line on stderr says so, and
the command waits for it; one that runs and has not answered in ANSWER_SECS is stuck: one
error line, exit 1.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import os
import select
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.settings import parse_secs
from config.words import loggable, quoted
from executor.cli.targets import Target, error, registered, registry_arguments, resolve, task_arguments

if TYPE_CHECKING:
    from executor.events import ControlReply
    from executor.host.controlwire import ControlRequest
    from executor.host.entry import RegistryEntry
    from executor.host.lock import Holder
    from executor.task.inspection import Inspection

GONE_SECS = 2.0  # the longest a supervisor that closed its socket is given to be gone
STARTING_SECS = 5.0  # the longest a supervisor that is starting is given to open its socket
STARTING_POLL_SECS = 0.02  # how often a starting supervisor is looked at meanwhile
# A file's times come from the kernel's coarse clock, a tick behind time.time() at most: a
# socket made after its supervisor took the lock may look made this much before.
SOCKET_SLACK_SECS = 0.05
# The longest a running supervisor (neither stopped nor frozen) is given to answer a request
# at all; it answers at once, through its owner's queue, on a busy host in well under a second
ANSWER_SECS = 10.0


def register(sub: Any, command: Any) -> None:
    kill = command(sub, "kill", "stop a task gracefully through its supervisor, as a Mesos KILL does",
                   "examples:\n  stoker kill hello-0-3f2a1c8e\n  stoker kill SANDBOX --grace 10\n\n"
                   "Under stoker run the run stops (no restart); under stoker executor the agent "
                   "gets TASK_KILLED.")
    task_arguments(kill)
    kill.add_argument("--grace", type=_grace, default=None, metavar="SECS",
                      help="SIGTERM → SIGKILL grace (default: the task's kill grace)")
    registry_arguments(kill)
    kill.set_defaults(handler=run_kill)
    restart = command(sub, "restart", "restart one process of a running task",
                      "examples:\n  stoker restart hello-0-3f2a1c8e hello\n  stoker restart SANDBOX web\n\n"
                      "Its run gets SIGTERM, SIGKILL after the task's kill grace; the next run starts "
                      "at once and the restart counts as neither a failure nor a loss.")
    task_arguments(restart, process=True)
    registry_arguments(restart)
    restart.set_defaults(handler=run_restart)


def _grace(text: str) -> float:
    """SECS as a duration, within what the control socket takes (a usage error here, exit 2,
    rather than the supervisor's refusal, exit 1)."""
    from executor.host.controlwire import MAX_GRACE_SECS

    try:
        secs = parse_secs(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if secs > MAX_GRACE_SECS:
        raise argparse.ArgumentTypeError(f"{quoted(text)} is longer than the longest grace, "
                                         f"{MAX_GRACE_SECS:.0f} s (7 days)")
    return secs


def run_kill(args: argparse.Namespace) -> int:
    from executor.host.controlwire import KillControl
    from executor.task.taskview import DIED_KILLING

    last = _converse(args, KillControl(args.grace), "kill")
    if last is None:
        return 1
    if last.done and last.ok:
        return 0
    if not last.done:  # the supervisor went away before the end: say what is left
        inspection = _after_the_supervisor(_target(args, "kill").sandbox)
        truth = inspection.truth
        print(f"stoker kill: the supervisor went away; the task is {truth.state}"
              f"{f' ({DIED_KILLING})' if truth.died_killing else ''}")
        # one that died while killing ended as the kill would have, not by it: what the kill
        # did not end may live on (`stoker status` lists it), so not the kill's exit 0
        return 0 if truth.ended and not truth.died_killing else 1
    return 1


def run_restart(args: argparse.Namespace) -> int:
    from executor.host.controlwire import RestartControl

    last = _converse(args, RestartControl(args.process), "restart")
    if last is not None and not last.done:  # the supervisor went away: say so, and what is left
        inspection = _after_the_supervisor(_target(args, "restart").sandbox)
        error(f"the supervisor went away before process {quoted(args.process)} was restarted; "
              f"the task is {inspection.truth.state}")
    return 0 if last is not None and last.done and last.ok else 1


def _after_the_supervisor(sandbox: Path) -> Inspection:
    """The sandbox once the supervisor that closed the conversation has died. Its socket
    closes as it exits, a moment before /proc shows it gone (a zombie), so one that still
    looks alive is waited for, by its pidfd, for at most GONE_SECS (a connection broken
    for another reason), and the sandbox looked at again."""
    from executor.task.inspection import inspect_sandbox

    inspection = inspect_sandbox(sandbox)
    attempt = inspection.attempt
    if not inspection.truth.alive or attempt is None or not attempt.supervisor_pid:
        return inspection
    try:
        pidfd = os.pidfd_open(attempt.supervisor_pid)
    except ProcessLookupError:  # gone meanwhile
        return inspect_sandbox(sandbox)
    except OSError:  # no pidfds (a kernel before 5.3, a seccomp profile): /proc, every 10 ms
        from executor.host.identity import identity_of

        deadline = time.monotonic() + GONE_SECS
        while identity_of(attempt.supervisor_pid) is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        return inspect_sandbox(sandbox)
    try:
        select.select([pidfd], [], [], GONE_SECS)
    finally:
        os.close(pidfd)
    return inspect_sandbox(sandbox)


def _target(args: argparse.Namespace, command: str) -> Target:
    """The task to kill or restart; another host's (a shared registry root) is refused, naming it."""
    return resolve(args.target, args, command=command)


def _converse(args: argparse.Namespace, request: ControlRequest, command: str) -> ControlReply | None:
    """Send the request, print each answer; the last one (None: no supervisor reached)."""
    from executor.events import ControlReply
    from executor.host.controlclient import ControlUnavailable

    last = None
    target = _target(args, command)
    try:
        for last in _replies(target.sandbox, lambda: registered(target, args), request, command):
            stream = sys.stdout if last.ok else sys.stderr
            print(f"stoker {command}: {loggable(last.message)}", file=stream, flush=True)
    except ControlUnavailable as exc:
        error(str(exc))
        return None
    except OSError:
        pass  # the connection broke: the caller looks at what is left
    return last or ControlReply(ok=False, done=False, message="no answer")


def _replies(sandbox: Path, lookup: Callable[[], RegistryEntry | None], request: ControlRequest,
             command: str) -> Iterator[ControlReply]:
    """The supervisor's answers. With the registry's entry (`lookup`; the task cannot write
    it), only the `.stoker` it pins and the supervisor it names are trusted: a task that owns
    its sandbox may have planted a `.stoker` of its own, with a lock naming its own process
    and a socket it answers on. The entry is looked up again when the lock's holder is not
    the one it names: a new supervisor of the sandbox may have registered meanwhile. Without
    an entry, the process the lock file names is the supervisor only while it holds the lock
    (`lock.holds`): the task may have written the file, naming a stranger's process."""
    from executor.host import identity, lock
    from executor.host.controlclient import ControlUnavailable, ask, connect

    entry = lookup()
    where = os.fspath(sandbox)
    stoker_dir = _stoker_dir_of(sandbox, entry)
    try:
        holder = _started(stoker_dir, where, command)
        if holder is None or not identity.is_alive(holder.pid, holder.start_ticks, holder.boot_id):
            state = _state_of(sandbox, entry) if holder is not None else "unknown"
            raise ControlUnavailable(f"no live supervisor holds {quoted(where)} (its task is {state})")
        if entry is not None and not _names(entry, holder):
            entry = _again(entry, lookup)
        if entry is not None and not _names(entry, holder):
            raise ControlUnavailable(f"the lock in {quoted(where + '/.stoker')} names pid {holder.pid}, not the "
                                     f"supervisor the host registry names (pid {entry.supervisor_pid})")
        if not lock.holds(holder, stoker_dir):  # a live process the task named in the file
            raise ControlUnavailable(f"no live supervisor holds {quoted(where)}: the process its lock file "
                                     f"names does not hold the lock")
        sock = connect(stoker_dir, where, holder.pid)
    finally:
        os.close(stoker_dir)
    paused = _say_paused(command, holder.pid)
    with sock:
        yield from ask(sock, request, lambda s: _first_answer(s, command, holder.pid, where, paused))


def _first_answer(sock: Any, command: str, pid: int, where: str, paused: bool) -> None:
    """Wait for the supervisor's first answer to the request sent on `sock`: a running one
    answers at once (its owner's queue), so one that has not in ANSWER_SECS, neither stopped
    nor frozen, is stuck: ControlUnavailable (was: the command waited for ever without a
    word). A stopped or frozen one is waited for, as `_say_paused` said (the first look that
    finds it so says it)."""
    from executor.host.controlclient import ControlUnavailable

    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    while not poller.poll(None if paused else ANSWER_SECS * 1000):
        if not (paused := _say_paused(command, pid)):
            raise ControlUnavailable(
                f"the supervisor (pid {pid}) of {loggable(where)} took the request but has not answered it in "
                f"{ANSWER_SECS:g} s, neither stopped nor frozen: it may be stuck (a hung file system); it "
                "acts on the request if it recovers")


def _say_paused(command: str, pid: int) -> bool:
    """One line on stderr when the supervisor cannot answer until someone lets it go on:
    stopped (SIGSTOP, a debugger), or frozen by its cgroup (`systemctl freeze`, `docker
    pause`: the kernel shows it sleeping; was: the command waited without a word); whether
    it is so."""
    from executor.host import identity
    from executor.host.frozen import frozen_cgroup

    if identity.is_stopped(pid):
        why = f"is stopped (SIGSTOP, or a debugger): it answers once continued (kill -CONT {pid})"
    elif (frozen := frozen_cgroup(pid)) is not None:
        why = f"is frozen (its cgroup {loggable(frozen)}): it answers once thawed"
    else:
        return False
    print(f"stoker {command}: the supervisor (pid {pid}) {why}", file=sys.stderr)  # (line-buffered: at once)
    return True


def _stoker_dir_of(sandbox: Path, entry: RegistryEntry | None) -> int:
    """`_stoker_dir`; a GONE task's (its sandbox another task's now) said as such, not as a
    `.stoker` the task may have planted."""
    from executor.host.controlclient import ControlUnavailable

    try:
        return _stoker_dir(sandbox, entry)
    except ControlUnavailable:
        if entry is not None and (state := _state_of(sandbox, entry)).startswith("GONE"):
            raise ControlUnavailable(f"no live supervisor holds {quoted(os.fspath(sandbox))} (its task is "
                                     f"{state})") from None
        raise


def _state_of(sandbox: Path, entry: RegistryEntry | None) -> str:
    """The state of the entry's task (the sandbox's latest without one), as `stoker status`
    says it; a GONE one's with why."""
    from executor.task.inspection import inspect_sandbox

    inspection = inspect_sandbox(sandbox, entry)
    return f"GONE: {inspection.problem}" if inspection.truth.gone else inspection.truth.state


def _stoker_dir(sandbox: Path, entry: RegistryEntry | None) -> int:
    """The sandbox's `.stoker`, opened: the one `entry` pins, if there is one. The sandbox is
    not reached through another user's symlink to a directory not theirs
    (`executor/host/operatorpath.py`): root's kill of a path in alice's home would else
    reach whatever she pointed it at."""
    from executor.host.controlclient import ControlUnavailable
    from executor.host.operatorpath import ForeignLink, open_sandbox
    from executor.host.sandbox import open_stoker_dir
    from executor.procs import saferead

    where = os.fspath(sandbox)
    try:
        root = open_sandbox(sandbox)
        try:
            return open_stoker_dir(sandbox, pinned=entry.stoker_dir if entry is not None else "", sandbox_fd=root)
        finally:
            os.close(root)
    except ForeignLink as exc:
        raise ControlUnavailable(str(exc.strerror)) from None
    except PermissionError as exc:  # a task sandbox, of a supervisor of another user's
        raise ControlUnavailable(f"cannot open {quoted(where + '/.stoker')}: {saferead.describe(exc)}: only "
                                 f"the supervisor's user (or root) may control its task") from None
    except OSError as exc:
        if entry is None:
            raise ControlUnavailable(f"{quoted(where)} is not a task sandbox: .stoker: "
                                     f"{saferead.describe(exc)}") from None
        now = "there is none" if exc.errno == errno.ENOENT else saferead.describe(exc)
        raise ControlUnavailable(  # the control socket is in the directory the supervisor made
            f"{quoted(where + '/.stoker')} is not the directory its supervisor (pid {entry.supervisor_pid}) "
            f"made ({now}): it was renamed or removed since the task started; rename that back to "
            ".stoker to control the task") from None


def _names(entry: RegistryEntry, holder: Holder) -> bool:
    return (holder.pid, holder.start_ticks) == (entry.supervisor_pid, entry.supervisor_start)


def _again(entry: RegistryEntry, lookup: Callable[[], RegistryEntry | None]) -> RegistryEntry:
    """The registry's entry for the sandbox once more, if it pins the same `.stoker` (a
    supervisor that started there since the first look, and registered); else `entry`."""
    fresh = lookup()
    return fresh if fresh is not None and fresh.stoker_dir == entry.stoker_dir else entry


def _lock_age(holder: Holder) -> float:
    """How long ago `holder`, alive on this boot, took its lock: by CLOCK_BOOTTIME, which no
    step of the wall clock moves (by the wall clock only for a lock that has no such time)."""
    if holder.since_boot is None:
        return time.time() - holder.since_wall
    return time.clock_gettime(time.CLOCK_BOOTTIME) - holder.since_boot


def _holders_socket(made: float, holder: Holder) -> bool:
    """Whether the control socket made at `made` (its mtime: the wall clock's) is `holder`'s,
    made once it took the lock, not a SIGKILLed supervisor's left behind: made after the
    lock's wall time, or younger than the lock, whose age is the boot clock's (`_lock_age`).
    The wall clock alone judged wrong when it was stepped back between the lock and the
    socket (the supervisor's own socket looked older than its lock, and the command waited
    up to STARTING_SECS); the ages alone, when stepped forward since the socket was made."""
    if made >= holder.since_wall - SOCKET_SLACK_SECS:
        return True
    return holder.since_boot is not None and time.time() - made <= _lock_age(holder) + SOCKET_SLACK_SECS


def _started(stoker_dir: int, where: str, command: str) -> Holder | None:
    """Who holds the sandbox's lock. A supervisor that is starting (the lock taken by an
    early start, which writes no pid in it, while `stoker run` loads; or its control socket
    not made yet) is waited for, at most STARTING_SECS (a line on stderr says so): the
    command would otherwise say that no supervisor runs, and the task would run on. A
    socket made before the lock was taken is a SIGKILLed supervisor's, left behind (a re-run
    in its sandbox makes its own). One that took the lock longer ago than STARTING_SECS has
    no socket to wait for (it could not make it: `control_unavailable` in its log)."""
    from executor.host import lock
    from executor.host.sandbox import CONTROL_SOCKET

    deadline = time.monotonic() + STARTING_SECS
    said = False
    while True:
        holder = lock.holder(stoker_dir)
        holder = lock.as_seen_here(holder, stoker_dir) if holder is not None else None
        if holder is not None and lock.holds(holder, stoker_dir):
            with contextlib.suppress(OSError):
                if _holders_socket(os.stat(CONTROL_SOCKET, dir_fd=stoker_dir, follow_symlinks=False).st_mtime, holder):
                    return holder
            if _lock_age(holder) > STARTING_SECS:
                return holder
        elif lock.locked_by(stoker_dir) is None:  # nobody holds the lock: nobody is starting
            return holder
        if time.monotonic() >= deadline:
            return holder
        if not said:
            print(f"stoker {command}: the supervisor of {loggable(where)} is starting; waiting for it",
                  file=sys.stderr, flush=True)
            said = True
        time.sleep(STARTING_POLL_SECS)
