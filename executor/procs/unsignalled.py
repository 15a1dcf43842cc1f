"""The task's processes this supervisor may not signal, or whose end it may not see, in words.

A supervisor that is not root may signal only the processes whose real or saved user id is
its own. A task's process that execs a setuid program which takes its real user id too
(`su`, `sudo`, a daemon that drops to another user's) is out of its reach: every SIGTERM and
SIGKILL is refused (EPERM), and with no cgroup to kill it through (`cgroup.kill` needs no
permission over the process), it outlives the task. The containment says so once, at close
(`Containment.kill_all`), naming each of them; this module reads what it names. A daemon a
run left that refuses its stop signal is named as it refuses it (`report_daemons`), and the
stop does not wait for it.

A run whose top process a debugger traces (`gdb -p`, `strace -p`) ends when SIGKILLed,
but the kernel tells its tracer first, and its parent, the supervisor, only once the tracer
has taken that news: a debugger holding it at its prompt keeps the run from ending, and the
stop gives it up 0.25 s after its SIGKILL (`did not exit 0.25 s after SIGKILL`). `say_traced`
names the tracer as the SIGKILL goes out, so that line has its reason.

A process SIGKILLed that cannot die yet (in D state) is named at the task's end (`not_gone`), and
at the close (`close_incomplete`); so is the task's cgroup its close could not remove (a
member in D state: `cgroup_left`) or finish by its deadline (`cgroup_cut`), and what becomes
of it: the watchdog's to finish, or left behind.

Off the start's path: loaded with the kill's machine half a second into the task, or by
`stoker run` before a restart's wait (`killing.load_kill_machine`), so that a supervisor
that runs through an upgrade in place names them with the code it started with (a run's
SIGKILL after its grace loaded this file, and an upgrade's that did not load failed the
task; so did a later attempt's close, of a service whose attempts each ended sooner).
Never raises.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterable

from config.words import number
from executor.logs import log_event
from executor.procs.watchdogsh import CGROUP_SECS

logger = logging.getLogger("executor.procs.containment")

SHOWN = 5  # processes named in the line; the rest are counted
_COMMAND_CHARS = 80


def report(label: str, left: Iterable[int]) -> None:
    """One ERROR line naming those of `left` this process may not signal (none: no line)."""
    if stuck := refused(sorted(left)):
        count = f"{len(stuck)} process{'es' if len(stuck) > 1 else ''}"
        log_event(logger, logging.ERROR, "close_incomplete", task=label, reason=(
            f"{count} of the task may not be signalled by this user "
            f"(uid {os.geteuid()}: a setuid program took another user's id) and are "
            f"left running: {describe(stuck)}"))


def report_daemons(label: str, sig: int, refused: list[int]) -> None:
    """One ERROR line naming the daemons the task's runs left that refused `sig`: the stop
    does not wait for them (`Containment.signal_daemons`)."""
    log_event(logger, logging.ERROR, "daemons_unsignalled", task=label, signal=signal.Signals(sig).name,
              reason=f"{len(refused)} of the daemons the task's runs left may not be signalled by this user "
                     f"(uid {os.geteuid()}: a setuid program took another user's id): {describe(sorted(refused))}",
              consequence="the stop does not wait for them; they are left running")


def say_traced(label: str, runs: Iterable[tuple[str, int, int]]) -> None:
    """One WARNING for each run (process, run, top pid) whose top process is traced."""
    for process, run, pid in runs:
        tracer = _status_field(pid, b"TracerPid:")
        if tracer.isdigit() and tracer != "0":
            log_event(logger, logging.WARNING, "run_traced", task=label, process=process, run=run,
                      pid=pid, tracer=f"{tracer} ({_command(int(tracer))})",
                      reason="a debugger traces it: its end reaches the supervisor only once the "
                             "tracer has taken it, so the run may be given up on after its SIGKILL")


def refused(pids: Iterable[int]) -> list[int]:
    """Those of `pids` (live, and left after every SIGKILL) that this process may not signal."""
    out = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except PermissionError:
            out.append(pid)
        except OSError:
            continue
    return out


def close_incomplete(label: str, left: Iterable[int], began: float) -> frozenset[int]:
    """One ERROR line naming `left`, what the close's kill (begun at `began`, monotonic) left
    alive at its end (one in D state: a FUSE request held); returns them."""
    pids = sorted(left)
    log_event(logger, logging.ERROR, "close_incomplete", task=label,
              reason=f"{number(time.monotonic() - began)} s after the first SIGKILL, {not_gone(pids)}")
    return frozenset(pids)


def cgroup_left(label: str, directory: str, problem: str, watchdog: int | None, frozen: bool) -> None:
    """What becomes of a cgroup its close could not remove (EBUSY: a member SIGKILLed in D
    state, its FUSE or NFS request held): the watchdog's, which kills it and removes the
    cgroup once it can, within its own bound; or, when none runs, left behind. An ERROR
    when it is left FROZEN (`_frozen`)."""
    if watchdog is not None:
        log_event(logger, logging.ERROR if frozen else logging.WARNING, "cgroup_remove_failed",
                  task=label, cgroup=directory, error=problem,
                  consequence=f"the watchdog (pid {watchdog}), let go, {_frozen(frozen)}kills what is left "
                              f"and removes it once it can, within its own {CGROUP_SECS} s")
        return
    log_event(logger, logging.ERROR, "cgroup_remove_failed", task=label, cgroup=directory, error=problem,
              consequence=f"no watchdog runs to finish it: {directory} and the processes still in it are "
                          f"left behind{' FROZEN, none thaws them' if frozen else ''}")


def cgroup_cut(label: str, directory: str, problem: str, watchdog: int | None, frozen: bool) -> None:
    """What becomes of a cgroup its close's deadline cut: the watchdog's to finish, or,
    when none runs (it could not start, or exited), left behind (an ERROR then, and when
    it is left FROZEN)."""
    if watchdog is not None:
        log_event(logger, logging.ERROR if frozen else logging.WARNING, "cgroup_close_cut", task=label,
                  cgroup=directory, reason=problem,
                  consequence=f"the watchdog (pid {watchdog}), let go, {_frozen(frozen)}kills what is left "
                              "and removes it")
        return
    log_event(logger, logging.ERROR, "cgroup_close_cut", task=label, cgroup=directory, reason=problem,
              consequence=f"no watchdog runs to finish it (it could not start, or it exited): {directory}, "
                          "the cgroups below it and the processes still in them are left behind"
                          f"{' FROZEN, none thaws them' if frozen else ''}")


def _frozen(frozen: bool) -> str:
    """The watchdog's first step for a v1 freezer tree the close left FROZEN (its thaw failed:
    out of descriptors): its members, SIGKILLed, die only once it is thawed."""
    return "thaws it (its SIGKILLed processes die only then), " if frozen else ""


def not_gone(pids: list[int]) -> str:
    """'2 processes SIGKILLed and not yet gone (...): pid 12 (stat /mnt, state D), ...':
    what of a task still lives at its end, given up on after its SIGKILL."""
    count = f"{len(pids)} process{'es' if len(pids) > 1 else ''}"
    named = [f"pid {pid} ({_command(pid)}, state {_status_field(pid, b'State:')})" for pid in pids[:SHOWN]]
    more = f" and {len(pids) - SHOWN} more" if len(pids) > SHOWN else ""
    return (f"{count} SIGKILLed and not yet gone (a SIGKILLed process runs no code of its own again; "
            f"one in D state ends once the kernel lets it go; the close and the watchdog SIGKILL it "
            f"again): " + ", ".join(named) + more)


def describe(pids: list[int]) -> str:
    """'pid 12 (su -, uid 0), pid 13 (...)', at most SHOWN named and the rest counted."""
    named = [f"pid {pid} ({_command(pid)}, uid {_uid(pid)})" for pid in pids[:SHOWN]]
    more = f" and {len(pids) - SHOWN} more" if len(pids) > SHOWN else ""
    return ", ".join(named) + more


def _command(pid: int) -> str:
    for name in ("cmdline", "comm"):  # a setuid program's cmdline is readable; comm always
        try:
            with open(f"/proc/{pid}/{name}", "rb") as f:
                data = f.read(4096)
        except OSError:
            continue
        text = data.rstrip(b"\0\n").replace(b"\0", b" ").decode(errors="replace")
        text = "".join(c if c.isprintable() else "?" for c in text)
        if text:
            return text if len(text) <= _COMMAND_CHARS else text[: _COMMAND_CHARS - 3] + "..."
    return "?"


def _uid(pid: int) -> str:
    """The real user id ('Uid:' in /proc/PID/status), '?' when unreadable."""
    return _status_field(pid, b"Uid:")


def _status_field(pid: int, name: bytes) -> str:
    """The first word of a /proc/PID/status line, '?' when unreadable."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(name):
                    return line.split()[1].decode()
    except (OSError, IndexError, ValueError):
        return "?"
    return "?"
