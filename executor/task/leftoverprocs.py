"""A LOST task's leftover processes as `stoker status`, the observer and /metrics list them:
the processes still carrying its task marker (found in one /proc scan for every LOST task,
`inspection.with_leftovers`), with the process and run their run marker names and their
command line, cut short.

Only those of the task's user (by real uid: a setuid program the task ran keeps it) are its
leftovers, counted and listed as such; another user's process carrying the marker is shown
apart, with its user (`Foreign`), never counted: the marker is anyone's to read (its
watchdog's command line) and copy into a process of theirs, and a root task's process that
switched to another user (a daemon dropping privileges) is one too, which the operator
should see; unless its watchdog's list names it (`heldfile.held_leftovers`: a root list,
no one else's to write, counts any user's process, and a re-run kills it as held), or it
is in the task's own cgroup, the task's user's (no other user may move a process in: a
root task's daemon that dropped privileges, which a re-run kills too). The
task's user is the one its checkpoint's header says its processes ran as (`run_uid`), when
no one but root or that user could have written the checkpoint
(`inspection.trusted_run_uid`): a Docker task runs as the image's user (the executor's own,
in the container), whoever the agent gave the sandbox to. Else (an older Stoker's
checkpoint) it is the sandbox's owner (through a symlink its path ends in): `stoker run`
refuses a sandbox not its runner's, and the Mesos executor gives the role's sandbox to
the role its task runs as.
"""
from __future__ import annotations

import os
from collections.abc import Container, Iterable

import attrs

from executor.host.replacefile import user_name
from executor.procs import proctree, saferead
from executor.procs.runenv import RUN_MARKER, TASK_MARKER

CMDLINE_BYTES = 4096
CMDLINE_SHOWN = 80


@attrs.frozen(slots=True)
class Leftover:
    """A process still carrying a LOST task's marker."""

    pid: int
    process: str  # "" when it carries no run marker of the task
    run: int | None
    command: str


@attrs.frozen(slots=True)
class Foreign:
    """A process of a user other than the task's that carries its marker."""

    pid: int
    user: str  # `name (uid N)`
    command: str


def by_user(listed: list[Leftover], uid: int | None, marker: str,
            held: Container[int] = ()) -> tuple[list[Leftover], list[Foreign]]:
    """`listed` split into those of `uid` (the task's user: all when None, and one gone
    meanwhile), `held` (the watchdog's list counts them: `heldfile.held_leftovers`, a root
    list's any user's) or in the task cgroup of `marker`'s attempt, `uid`'s
    (`cgrouplost.in_task_cgroup`), and those of another user."""
    if uid is None:
        return listed, []
    mine, others = [], []
    for p in listed:
        owner = proctree.real_uid(p.pid)
        if owner is None or owner == uid or p.pid in held or _in_its_cgroup(marker, p.pid, uid):
            mine.append(p)
        else:
            others.append(Foreign(p.pid, user_name(owner), p.command))
    return mine, others


def _in_its_cgroup(marker: str, pid: int, uid: int) -> bool:
    from executor.procs.cgrouplost import in_task_cgroup  # only for another user's marked process

    return bool(marker) and in_task_cgroup(marker, pid, uid)


def carrying(procs: Iterable[proctree.ProcInfo], marker: str) -> list[Leftover]:
    """Those of `procs` carrying the task marker `marker`, each with the process and run its
    run marker names (the task's to set: anything), by pid."""
    mine = f"{TASK_MARKER}={marker}".encode()
    run_prefix = f"{RUN_MARKER}={marker}/".encode()
    found = []
    for info in sorted(procs, key=lambda p: p.pid):
        entries = info.environ.split(b"\0")
        if mine not in entries:
            continue
        process, run = "", None
        for item in entries:
            if item.startswith(run_prefix):
                name, _, number = item[len(run_prefix):].decode(errors="replace").rpartition("/")
                process, run = name, saferead.run_number(number)  # the task's to set: anything
        found.append(Leftover(info.pid, process, run, command_of(info.pid)))
    return found


def command_of(pid: int) -> str:
    """Its command line, cut to CMDLINE_SHOWN characters ("" once it is gone)."""
    try:
        fd = os.open(f"/proc/{pid}/cmdline", os.O_RDONLY)  # close-on-exec: Python's default
    except OSError:
        return ""
    try:
        data = os.read(fd, CMDLINE_BYTES)
    except OSError:
        data = b""
    finally:
        os.close(fd)
    text = data.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    return text if len(text) <= CMDLINE_SHOWN else text[: CMDLINE_SHOWN - 3] + "..."
