"""The owner's side of a task's ServerSet announcement: when to join, leave and close, and
what the checkpoint keeps of it.

Owns, for one task: joining the ServerSet once the task is RUNNING (healthy, when it has a
health check); leaving it at the first step of any stop — a kill request, a failed health
check, a failed first announcement, a SHUTDOWN or a signal to the supervisor, or the planner
stopping the task because its processes ended or failed — before the lifecycle endpoints are
called and before any process is signalled, so that clients stop routing to the instance
first; closing the ZooKeeper session when the task is over; one `announce` checkpoint record
per change of the membership (`stoker status` and `stoker ps` show the last one); and
saying when the first announcement missed its bound, which fails the task with Aurora's
message (`serverset.TIMED_OUT_REASON`).

Leaving blocks the owner's thread until the member is deleted (one ZooKeeper round trip,
a few milliseconds) or `leave_within_secs` passed (ZooKeeper unreachable or stalled: the
member then goes with the announcer's session); a bound on the whole stop (`stoker run
--kill-grace`) starts after it. Once this process has an exit time (`stoker executor` after
SHUTDOWN), the leave and the close take at most a share of what is left of it each (the
leave of what is left of the SHUTDOWN's grace, which ends sooner), so that the processes
keep most of the grace between SIGTERM and SIGKILL, and the close of the
task's processes most of the rest. Everything else returns at once: the adapter
(`executor/task/announcer.py`, behind the owner's `Announcer` port) does its ZooKeeper work
on its own thread and posts `AnnouncementChanged` to the owner's queue.

Called only from the owner's thread. For a task that does not announce there is no
announcer and every call does nothing; nothing here imports the ZooKeeper client.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from config.words import number
from executor.events import TaskPhase
from executor.logs import log_event
from executor.task.journal import Journal
from executor.task.killing import StopBounds
from executor.task.membership import AnnouncementChanged, AnnouncerView
from executor.task.records import AnnounceRecord

if TYPE_CHECKING:
    from collections.abc import Callable

    from executor.task.ports import Announcer

__all__ = ["AnnouncementChanged", "Announcing", "earliest", "leave_within_secs",
           "next_record"]  # the owner takes the announcer's event from here

logger = logging.getLogger(__name__)

LEAVE_WITHIN_SECS = 2.0  # how long a stop waits for the member's deletion at most
CLOSE_WITHIN_SECS = 3.0  # how long the task's close waits for the session's end at most
LEAVE_SHARE = 0.25  # of a bound on the whole stop (`stoker run --kill-grace`, the exit time), at most


def next_record(last: AnnounceRecord | None, view: AnnouncerView) -> AnnounceRecord | None:
    """The record of `view`, or None when it says nothing `last` did not. `since` moves only
    when the state or the member changes (a reconnection keeps the member's `since`)."""
    since = view.since
    if last is not None and (last.state, last.member) == (view.state, view.member):
        since = last.since if last.since is not None else since
    record = AnnounceRecord(path=view.path, state=view.state, connection=view.connection,
                            member=view.member, reason=view.reason, since=since)
    return None if record == last else record


def leave_within_secs(stop_within_secs: float | None, exit_in_secs: float | None = None) -> float:
    """How long a stop waits for the member's deletion: LEAVE_WITHIN_SECS, and at most
    LEAVE_SHARE of a bound on the whole stop and of the time left before this process must
    exit (each None: no such bound)."""
    bounds = [LEAVE_SHARE * b for b in (stop_within_secs, exit_in_secs) if b is not None]
    return max(0.0, min([LEAVE_WITHIN_SECS, *bounds]))


def earliest(*deadlines: float | None) -> float | None:
    """The first of the deadlines that are set (None: none is)."""
    return min((d for d in deadlines if d is not None), default=None)


class Announcing:
    """See the module docstring. `announcer` None: the task does not announce."""

    def __init__(self, announcer: Announcer | None, journal: Journal, label: str,
                 stop: StopBounds = StopBounds(), *, clock: Callable[[], float] = time.monotonic,
                 say: Callable[[str], None] | None = None) -> None:
        self._announcer = announcer
        self._say = say  # a stop's line: what a leave or close still waiting waits for, and how long
        self._hurried = False  # a kill at once skipped the leave's wait (`hurry`)
        self._journal = journal
        self._label = label
        self._stop_within_secs = stop.within_secs
        self._exit_at = stop.exit_at  # when this process must be gone (None, or it says None: no bound)
        self._clock = clock
        self._stopping = False  # the task is stopping: never join again
        self._timed_out = False  # the first announcement missed its bound (said once)
        self._last: AnnounceRecord | None = None
        if announcer is not None:  # from the start, the checkpoint says where it will announce
            self._record(announcer.view())

    def running(self) -> None:
        """The task became RUNNING: join the ServerSet (returns at once)."""
        if self._announcer is not None and not self._stopping:
            self._announcer.join()

    def stopping(self, why: str, grace_end_at: float | None = None) -> None:
        """The task begins to stop: leave the ServerSet now, before anything else of the
        stop happens. Only the first call does something. `grace_end_at`: the kill's
        `kill_all_at` (a SHUTDOWN's grace end, when whatever runs is SIGKILLed), which bounds
        the leave as the exit time does, by a share of what is left: it comes before the
        exit time, and a share of the exit time's alone ran past it under ~1.17 s of the
        agent's grace (the processes SIGKILLed with no SIGTERM)."""
        if self._announcer is None or self._stopping:
            return
        self._stopping = True
        grace_in_secs = None if grace_end_at is None else grace_end_at - self._clock()
        within = leave_within_secs(self._stop_within_secs, earliest(self._exit_in_secs(), grace_in_secs))
        gone = self._announcer.leave(within, self._waiting("leaving the ServerSet"))
        view = self._announcer.view()
        if not gone:
            waited = "a kill at once skipped the wait for ZooKeeper to delete the member" if self._hurried else \
                f"the member was not deleted within {within:.3g} s"
            log_event(logger, logging.WARNING, "announcer_leave_timeout", task=self._label,
                      path=view.path, member=view.member, reason=(
                          f"{why}: {waited} ({view.reason}); stopping anyway, it goes with the ZooKeeper session"))
        self._record(view)

    def hurry(self) -> None:
        """A kill at once (a second Ctrl-C): the leave and the close, under way or to come,
        wait no more for ZooKeeper. Safe from any thread (it sets an event)."""
        self._hurried = True
        if self._announcer is not None:
            self._announcer.hurry()

    def phase(self, phase: TaskPhase) -> None:
        """The planner's phase after a decision: out of ACTIVE, the task is stopping (its
        processes ended or failed, or it is being killed) and any signal comes after this."""
        if phase is not TaskPhase.ACTIVE:
            self.stopping(f"the task is stopping ({phase.value})")

    def changed(self, view: AnnouncerView) -> None:
        """The announcer posted a change (`view`): recorded as it came while the task runs;
        once it stops, what the announcer shows now (a change queued before the leave is
        older than what `stopping` recorded)."""
        if self._announcer is not None:
            self._record(self._announcer.view() if self._stopping else view)

    def overdue(self, now: float) -> str | None:
        """The reason to fail the task, once, if the first announcement missed its bound."""
        if self._announcer is None or self._timed_out or not self._announcer.overdue(now):
            return None
        from executor.task.serverset import TIMED_OUT_REASON  # a task that announces has it loaded

        self._timed_out = True
        view = self._announcer.view()
        log_event(logger, logging.ERROR, "announcer_timeout", task=self._label, path=view.path,
                  connection=view.connection.value, reason=f"{TIMED_OUT_REASON} ({view.reason})")
        return TIMED_OUT_REASON

    def deadline_at(self) -> float | None:
        """When `overdue` may become true (None: nothing to wait for)."""
        if self._announcer is None or self._timed_out or self._stopping:
            return None
        if self._announcer.view().first_joined:
            return None
        return self._announcer.first_join_deadline_at

    def close(self) -> None:
        """The task is over: leave if still in, end the ZooKeeper session, record it."""
        if self._announcer is None:
            return
        self._stopping = True
        exit_in_secs = self._exit_in_secs()
        self._announcer.close(CLOSE_WITHIN_SECS if exit_in_secs is None
                              else max(0.0, min(CLOSE_WITHIN_SECS, LEAVE_SHARE * exit_in_secs)),
                              self._waiting("ending the ZooKeeper session"))
        self._record(self._announcer.view())

    def _waiting(self, step: str) -> Callable[[float], None] | None:
        """What says that `step` still waits for ZooKeeper (`announcer.SAID_AFTER_SECS` in: a
        stalled ZooKeeper held a stop up to 2 s, and its end 3 s more, without a word)."""
        say, announcer = self._say, self._announcer
        if say is None or announcer is None:
            return None

        def waiting(left_secs: float) -> None:
            view = announcer.view()
            member = f"{view.path}/{view.member}" if view.member else view.path
            say(f"{step}: waiting up to {number(left_secs)} s more for ZooKeeper to delete the member "
                f"{member} ({view.reason})")

        return waiting

    def _exit_in_secs(self) -> float | None:
        """How long until this process must be gone (None: no bound)."""
        exit_at = self._exit_at() if self._exit_at is not None else None
        return None if exit_at is None else exit_at - self._clock()

    def _record(self, view: AnnouncerView) -> None:
        record = next_record(self._last, view)
        if record is not None:
            self._last = record
            self._journal.announcement(record)
