"""The truth about a task whose supervisor may be gone. PURE.

Owns `judge`: what a task's state is, given what its checkpoint recorded and whether its
supervisor still runs. A live supervisor's task is what it recorded, or RESTARTING when
that is an end after which it scheduled the next attempt (`stoker run` in its back-off); a
gone supervisor's task is ended when it recorded a terminal state (FINISHED, FAILED, KILLED), or
when it died while KILLING and its record says how the kill ends the task (FAILED or KILLED, as
Aurora shows a kill's end: `died_killing`), and LOST otherwise, "since" the last thing it wrote: the checkpoint's last record, else the
checkpoint's modification time, else its registry entry (the rule says which). Split from
`executor/host/entry.py` so that a supervisor, which only writes its entry, never creates
these classes; the inspection commands (`stoker status`, `ps`, `observe`) load it.

No I/O, no clock, no logging: `executor/task/inspection.py` reads the checkpoint, /proc
and the registry, and passes them in.
"""
from __future__ import annotations

import enum

import attrs

from executor.host.clock import age
from executor.host.entry import LOST, NO_TASK, TERMINAL_STATES

RESTARTING = "RESTARTING"  # an attempt ended, the next one is scheduled, its supervisor runs
# a gone supervisor's task whose sandbox no longer holds its checkpoint (removed, or a later
# task's now): nothing of it can be read (`gone`)
GONE = "GONE"
# a task whose checkpoint was not read (its sandbox renamed or deleted, its `.stoker` renamed
# away, the file unreadable): what it is cannot be said, and NEW would say it never started
UNKNOWN = "UNKNOWN"


class SinceSource(enum.Enum):
    LAST_RECORD = "its checkpoint's last record"
    CHECKPOINT_MTIME = "its checkpoint's modification time"
    REGISTRY = "its registry entry"


@attrs.frozen(slots=True)
class Truth:
    """A task's state as it is, not only as it was recorded."""

    state: str  # the recorded state, NO_TASK, LOST, RESTARTING, GONE or UNKNOWN
    alive: bool  # its supervisor runs
    ended: bool  # its supervisor is gone and it ended (or never had a task)
    since_wall: float | None = None  # LOST: the last sign of life
    since: SinceSource | None = None
    died_killing: bool = False  # ended as its kill would have: its supervisor died during it
    # LOST: the supervisor that took its sandbox since (its task id, else its pid), when the task
    # left no process (`inspection.with_replacements`); "" otherwise
    replaced_by: str = ""

    @property
    def lost(self) -> bool:
        return self.state == LOST

    @property
    def gone(self) -> bool:
        return self.state == GONE

    @property
    def unsupervised(self) -> bool:
        """Its supervisor is gone before it saw every process of the task end: LOST, or died
        while killing, or GONE without having let go; a process of the task may live on (its
        leftovers are looked for)."""
        return self.lost or self.died_killing or self.gone and not self.ended

    def describe_since(self, when: str) -> str:
        """'LOST (supervisor gone since WHEN, its checkpoint's last record)', and '; replaced by
        ID in the same sandbox' before the ')' when a later supervisor took its sandbox."""
        source = self.since.value if self.since else "unknown"
        return f"{LOST} (supervisor gone since {when}, {source}{replaced_words(self.replaced_by)})"


def taker_name(task_id: str, supervisor_pid: int) -> str:
    """How a LOST task's line names the supervisor that took its sandbox: its task id, else its pid."""
    return task_id or f"the supervisor pid {supervisor_pid}"


def replaced_words(taker: str) -> str:
    """'; replaced by TAKER in the same sandbox' ("": `taker` "", not replaced)."""
    return f"; replaced by {taker} in the same sandbox" if taker else ""


def judge(recorded: str | None, alive: bool, *, last_record_wall: float | None,
          checkpoint_mtime: float | None, registry_wall: float | None,
          let_go: bool = False, restart_scheduled: bool = False,
          killing_ends_as: str | None = None, unread: bool = False) -> Truth:
    """The truth about a task whose checkpoint's current attempt recorded `recorded` (None:
    no task state yet) and whose supervisor is `alive` or not. `let_go`: the supervisor
    marked its registry entry ended before it went (it closed cleanly); `restart_scheduled`:
    the attempt's checkpoint has a `restart` record (the next attempt is due; a supervisor
    that went before it started leaves the recorded end, as one that stopped does);
    `killing_ends_as`: recorded KILLING, how the kill ends the task (None: not recorded);
    `unread`: its checkpoint could not be read, so nothing was recorded as far as this
    knows: UNKNOWN where NO_TASK would say it never started (a supervisor gone without
    letting go is LOST all the same)."""
    if unread and recorded is None and (alive or let_go):
        return Truth(UNKNOWN, alive=alive, ended=not alive)
    if alive:
        if recorded in TERMINAL_STATES and restart_scheduled:
            return Truth(RESTARTING, alive=True, ended=False)
        return Truth(recorded or NO_TASK, alive=True, ended=False)
    if recorded in TERMINAL_STATES:
        return Truth(recorded, alive=False, ended=True)
    if recorded is None and let_go:
        return Truth(NO_TASK, alive=False, ended=True)  # it never started a task
    if recorded == "KILLING" and killing_ends_as in TERMINAL_STATES:
        return Truth(killing_ends_as, alive=False, ended=True, died_killing=True)
    for wall, source in ((last_record_wall, SinceSource.LAST_RECORD),
                         (checkpoint_mtime, SinceSource.CHECKPOINT_MTIME),
                         (registry_wall, SinceSource.REGISTRY)):
        if wall is not None:
            return Truth(LOST, alive=False, ended=False, since_wall=wall, since=source)
    return Truth(LOST, alive=False, ended=False)


def gone(let_go: bool) -> Truth:
    """A task whose supervisor is gone and whose sandbox no longer holds its checkpoint:
    GONE, ended when its supervisor let go (its registry entry says when), else not (it may
    have left processes behind, looked for as a LOST task's)."""
    return Truth(GONE, alive=False, ended=let_go)


def describe_stopped(supervisor_pid: int | None) -> str:
    """A live supervisor the kernel shows stopped, the same in `stoker status` and the
    observer: nothing is supervised, restarted or health-checked until it is continued."""
    return (f"stopped: SIGSTOP or a debugger; nothing is supervised until it is continued, "
            f"kill -CONT {supervisor_pid}")


def describe_frozen(cgroup: str) -> str:
    """A live supervisor its cgroup holds frozen (`systemctl freeze`, `docker pause`), as the
    observer says it (`stoker status` warns on stderr): nothing is supervised until it is thawed."""
    return f"frozen: its cgroup {cgroup} is frozen; nothing is supervised until it is thawed"


def describe_restart(ended_attempt: int, ended_state: str | None, due_wall: float | None,
                     now_wall: float) -> str:
    """A RESTARTING task's words, the same in `stoker status`, `ps` and the observer:
    'attempt 2 ended FAILED; attempt 3 starts in 3.2s' ('is starting' once it is due)."""
    if due_wall is None:
        timing = "is scheduled"
    elif due_wall > now_wall:
        timing = f"starts in {age(due_wall - now_wall)}"
    else:
        timing = "is starting"
    return f"attempt {ended_attempt} ended {ended_state or 'unknown'}; attempt {ended_attempt + 1} {timing}"
