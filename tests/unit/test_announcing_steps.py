"""The owner's side of a ServerSet announcement (`executor/task/announcing.py`), step by step
with an announcer that does what the test says: how long a stop waits for the member's
deletion (its own bound, the stop's, the exit time's and the kill's grace end, each by a
share), what a wait still under way says, the line of a leave that timed out (a kill at once
too), the first announcement's timeout said once, the close's bound, and when the owner need
look at the announcement again."""
from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from executor.events import TaskPhase
from executor.task.announcing import CLOSE_WITHIN_SECS, LEAVE_WITHIN_SECS, Announcing
from executor.task.journal import Journal
from executor.task.killing import StopBounds
from executor.task.membership import AnnouncerView, Connection, MemberState
from executor.task.serverset import TIMED_OUT_REASON
from tests.support.logevents import lines

NOW = 100.0


class Told:
    """An announcer whose leave succeeds or not (`gone`), that calls each wait's `waiting`
    once with `left_secs`, and notes what it was asked."""

    def __init__(self, member: str | None = "member_0001", gone: bool = True, overdue: bool = False,
                 first_joined: bool = True) -> None:
        self.member, self.gone, self._overdue, self.first_joined = member, gone, overdue, first_joined
        self.asked: list[tuple[str, float | None]] = []

    def join(self) -> None:
        self.asked.append(("join", None))

    def leave(self, timeout_secs: float = 2.0, waiting: Callable[[float], None] | None = None) -> bool:
        self.asked.append(("leave", timeout_secs))
        if waiting is not None:
            waiting(1.5)
        return self.gone

    def close(self, timeout_secs: float = 3.0, waiting: Callable[[float], None] | None = None) -> None:
        self.asked.append(("close", timeout_secs))
        if waiting is not None:
            waiting(0.25)

    def hurry(self) -> None:
        self.asked.append(("hurry", None))

    def overdue(self, now: float) -> bool:
        return self._overdue

    @property
    def first_join_deadline_at(self) -> float | None:
        return 130.0

    def view(self) -> AnnouncerView:
        state = MemberState.JOINED if self.member else MemberState.JOINING
        return AnnouncerView(path="/aurora/web", member=self.member, state=state, reason=f"{state.value.lower()} now",
                             since=0.0, connection=Connection.LOST, first_joined=self.first_joined)


def announcing(announcer: Told, said: list[str] | None = None, *, within: float | None = None,
               exit_at: float | None = None) -> Announcing:
    return Announcing(announcer, Journal("t.0", lambda: 0.0), "t.0", StopBounds(5.0, within, exit_at=lambda: exit_at),
                      clock=lambda: NOW, say=said.append if said is not None else None)


@pytest.mark.parametrize(("within", "exit_at", "grace_end_at", "waited"), [
    (None, None, None, LEAVE_WITHIN_SECS),
    (4.0, None, None, 1.0),  # a share of the stop's bound
    (None, NOW + 6.0, None, 1.5),  # of the time left before the exit
    (None, NOW + 6.0, NOW + 2.0, 0.5),  # of the time left before the kill's grace ends, sooner
    (None, None, NOW - 1.0, 0.0),  # a grace over already: no wait
], ids=["own", "stop", "exit", "grace", "over"])
def test_a_stop_waits_for_the_member_s_deletion_within_a_share_of_each_bound(within, exit_at, grace_end_at, waited):
    told = Told()
    announcing(told, within=within, exit_at=exit_at).stopping("killed", grace_end_at)
    assert told.asked == [("leave", waited)]


@pytest.mark.parametrize(("member", "shown"), [("member_0001", "/aurora/web/member_0001"), (None, "/aurora/web")])
def test_a_leave_and_a_close_still_waiting_say_what_they_wait_for(member, shown):
    said: list[str] = []
    told = Told(member=member)
    owned = announcing(told, said)
    owned.stopping("killed")
    owned.close()
    state = "joined now" if member else "joining now"
    assert said == [
        f"leaving the ServerSet: waiting up to 1.5 s more for ZooKeeper to delete the member {shown} ({state})",
        f"ending the ZooKeeper session: waiting up to 0.25 s more for ZooKeeper to delete the member {shown} ({state})"]


@pytest.mark.parametrize("hurried", [False, True])
def test_a_leave_that_timed_out_is_one_warning_and_the_stop_goes_on(caplog, hurried):
    told = Told(gone=False)
    owned = announcing(told)
    if hurried:
        owned.hurry()
    owned.stopping("killed by the operator")
    owned.stopping("again")  # only the first stop leaves
    waited = ("a kill at once skipped the wait for ZooKeeper to delete the member" if hurried
              else "the member was not deleted within 2 s")
    assert lines(caplog, "announcer_leave_timeout") == [
        f'announcer_leave_timeout task=t.0 path=/aurora/web member=member_0001 reason="killed by the operator: '
        f'{waited} (joined now); stopping anyway, it goes with the ZooKeeper session"']
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert told.asked == [("hurry", None)] * hurried + [("leave", LEAVE_WITHIN_SECS)]


def test_a_first_announcement_that_missed_its_bound_fails_the_task_once(caplog):
    owned = announcing(Told(member=None, overdue=True, first_joined=False))
    assert owned.deadline_at() == 130.0
    assert owned.overdue(NOW) == TIMED_OUT_REASON
    assert owned.overdue(NOW) is None and owned.deadline_at() is None
    assert lines(caplog, "announcer_timeout") == [
        f'announcer_timeout task=t.0 path=/aurora/web connection=LOST reason="{TIMED_OUT_REASON} (joining now)"']
    assert [(r.name, r.levelno) for r in caplog.records] == [("executor.task.announcing", logging.ERROR)]


def test_the_announcement_is_looked_at_again_only_until_the_first_member_or_the_stop():
    assert announcing(Told(first_joined=True)).deadline_at() is None
    waiting = announcing(Told(member=None, first_joined=False))
    assert waiting.deadline_at() == 130.0
    waiting.phase(TaskPhase.ACTIVE)
    assert waiting.deadline_at() == 130.0
    waiting.phase(TaskPhase.FINALIZING)
    assert waiting.deadline_at() is None


@pytest.mark.parametrize(("exit_at", "within"), [(None, CLOSE_WITHIN_SECS), (NOW + 4.0, 1.0), (NOW + 20.0, 3.0),
                                                  (NOW - 1.0, 0.0)])
def test_the_close_waits_for_the_session_s_end_within_a_share_of_the_time_left(exit_at, within):
    told = Told()
    owned = announcing(told, exit_at=exit_at)
    owned.close()
    owned.running()  # closed: never joins again
    assert told.asked == [("close", within)]


def test_the_planner_s_stop_is_the_leave_s_reason_and_no_exit_time_no_bound(caplog):
    told = Told(gone=False)
    owned = Announcing(told, Journal("t.0", lambda: 0.0), "t.0", StopBounds(), clock=lambda: NOW)
    owned.phase(TaskPhase.FINALIZING)
    assert told.asked == [("leave", LEAVE_WITHIN_SECS)]
    (line,) = lines(caplog, "announcer_leave_timeout")
    assert 'reason="the task is stopping (FINALIZING): the member was not deleted within 2 s' in line
