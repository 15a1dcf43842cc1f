"""The owner and the ServerSet announcer (executor/task/announcing.py), with fakes and a fake clock.

Each story is what the owner did, in order, stamped with the fake clock: when it joins
(RUNNING), that leaving comes first in every stop (before the lifecycle endpoints, before
any signal, whoever stops the task), that a missed first announcement fails the task with
Aurora's message, and that the session is closed at the end. The real adapter against a
real ZooKeeper is tests/integration/test_announcer.py; the whole path, tests/e2e/
test_service_discovery.py.
"""
from __future__ import annotations

from collections.abc import Callable

import pytest

from config.spec import JobSpec, ProcessSpec
from executor.events import (
    ExitStatus,
    HealthChecked,
    ProcessExited,
    ProcessState,
    ProcessTransition,
    TaskState,
    TimerFired,
)
from executor.task.killing import StopBounds
from executor.task.membership import (
    AnnouncementChanged,
    AnnouncerView,
    Connection,
    MemberState,
    first_join_overdue,
)
from executor.task.replay import replay
from executor.task.serverset import TIMED_OUT_REASON
from healthcheck.policy import Attempt
from tests.support.fake_clock import FakeClock
from tests.support.fake_ports import Effects
from tests.support.owner_rig import LIFECYCLE, TERM, OwnerRig, job

pytestmark = pytest.mark.timeout(10)

PATH = "/aurora/me/test/t"


class FakeAnnouncer:
    """The owner's Announcer port: notes what it was asked; the test makes the member appear."""

    def __init__(self, effects: Effects, clock: FakeClock, bound_secs: float = 10.0,
                 leaves: bool = True) -> None:
        self._effects = effects
        self._clock = clock
        self._bound_secs = bound_secs
        self._leaves = leaves  # False: ZooKeeper unreachable, leave() times out
        self._joining = False
        self.deadline: float | None = None
        self.state, self.member, self.first_joined = MemberState.IDLE, None, False
        self.connection = Connection.LOST
        self.since = 0.0

    def join(self) -> None:
        self._effects.note("announce join")
        self._joining = True
        if self.deadline is None:
            self.deadline = self._clock.now + self._bound_secs
        self.state = MemberState.JOINING

    def leave(self, timeout_secs: float = 2.0, waiting: Callable[[float], None] | None = None) -> bool:
        self._effects.note(f"announce leave (within {timeout_secs:g} s)")
        self._joining = False
        if not self._leaves and self.member is not None:
            self.state = MemberState.LEAVING
            return False
        if self.state is not MemberState.IDLE:
            self.state, self.member, self.since = MemberState.LEFT, None, self._clock.now
        return True

    def hurry(self) -> None:
        self._effects.note("announce hurry")

    def close(self, timeout_secs: float = 3.0, waiting: Callable[[float], None] | None = None) -> None:
        self._effects.note("announce close" if timeout_secs == 3.0 else f"announce close (within {timeout_secs:g} s)")
        self.state, self.member, self.since = MemberState.CLOSED, None, self._clock.now

    def view(self) -> AnnouncerView:
        return AnnouncerView(path=PATH, member=self.member, state=self.state, reason=f"{self.state.value} now",
                             since=self.since, connection=self.connection, first_joined=self.first_joined)

    def overdue(self, now: float) -> bool:
        return first_join_overdue(self.deadline, self.first_joined, self._joining, now)

    @property
    def first_join_deadline_at(self) -> float | None:
        return self.deadline

    def created(self, member: str, since: float) -> AnnouncementChanged:
        """ZooKeeper created the member: what the adapter would post."""
        self.state, self.member, self.first_joined = MemberState.JOINED, member, True
        self.connection, self.since = Connection.CONNECTED, since
        return AnnouncementChanged(task="t.0", view=self.view(), changes=())


class Harness(OwnerRig):
    def __init__(self, spec: JobSpec, *, announce: bool = True, stop_within_secs: float | None = None,
                 **announcer_kw) -> None:
        super().__init__()
        self.announcer = FakeAnnouncer(self.effects, self.clock, **announcer_kw) if announce else None
        self.exit_at: float | None = None  # `stoker executor`'s exit time, set at SHUTDOWN
        self.own(spec, announcer=self.announcer, stop=StopBounds(5.0, stop_within_secs, exit_at=lambda: self.exit_at),
                 wall_clock=self.clock)
        self.owner.start()
        self.done = self.owner.step()

    def kill(self, **kw) -> None:
        self.owner.request_kill("killed by the agent (KILL)", 5.0, **kw)
        self.post(TimerFired(self.clock.now))

    def wait(self, secs: float) -> None:
        self.clock.advance(secs)
        self.post(TimerFired(self.clock.now))

    def exit(self, process: str = "a", code: int | None = None, sig: int | None = None) -> None:
        runs = [t.run for t in self.reporter.transitions if isinstance(t, ProcessTransition)
                and t.process == process and t.to is ProcessState.RUNNING]
        status = ExitStatus(signal=sig) if sig is not None else ExitStatus(exit_code=code)
        self.post(ProcessExited(process, runs[-1], pid=0, status=status, at=self.clock.now))

    def health(self, ok: bool) -> None:
        attempt = Attempt.passed() if ok else Attempt.failed("HTTP 503")
        self.post(HealthChecked(attempt, 0.001, self.clock.now))

    def joined(self, member: str = "member_0000000007") -> None:
        assert self.announcer is not None
        self.post(self.announcer.created(member, since=self.clock.now))

    def announce_records(self) -> list[dict]:
        return [r for r in self.checkpoint.records if r["kind"] == "announce"]


def test_a_task_without_health_check_joins_when_its_processes_start():
    h = Harness(job())
    assert h.effects.lines == ["0 update STARTING", "0 spawn a[0]", "0 announce join", "0 update RUNNING"]


def test_a_health_checked_task_joins_only_once_healthy():
    h = Harness(job(health=True))
    h.wait(1)
    assert "announce join" not in " ".join(h.effects.lines)
    h.health(True)
    assert h.effects.lines[-2:] == ["1 announce join", "1 update RUNNING"]


def test_a_kill_leaves_before_the_lifecycle_endpoints_and_sigterm():
    h = Harness(job(lifecycle=LIFECYCLE))
    h.joined()
    h.wait(1)
    h.kill()
    assert h.effects.lines[-2:] == ["1 announce leave (within 2 s)", "1 lifecycle start"]
    h.clock.advance(5)
    h.post(TimerFired(h.clock.now))
    h.exit(sig=TERM)
    assert h.effects.lines[-5:] == ["6 SIGTERM a[0]", "6 lifecycle: regular processes gone",
                                    "6 update KILLED", "6 announce close", "6 procs close"]
    assert h.owner.final_update.state is TaskState.KILLED


def test_a_failed_health_check_leaves_before_sigterm():
    h = Harness(job(health=True))
    h.health(True)
    h.joined()
    h.wait(1)
    h.health(False)
    assert h.effects.lines[-3:] == ["1 announce leave (within 2 s)", "1 health stop", "1 SIGTERM a[0]"]


def test_the_planner_stopping_the_task_leaves_before_it_signals_the_rest():
    """A process that fails for good ends the task: the other one is SIGTERMed, after the leave."""
    h = Harness(job(ProcessSpec(name="a", cmdline="x", max_failures=1, min_duration_secs=0.0),
                    ProcessSpec(name="b", cmdline="y", min_duration_secs=0.0)))
    h.joined()
    h.exit("a", code=3)
    assert h.effects.lines[-2:] == ["0 announce leave (within 2 s)", "0 SIGTERM b[0]"]
    h.exit("b", sig=TERM)
    assert h.owner.final_update.state is TaskState.FAILED


def test_a_task_that_finishes_leaves_as_it_ends_and_closes_after():
    h = Harness(job(ProcessSpec(name="a", cmdline="x", min_duration_secs=0.0)))
    h.joined()
    h.exit("a", code=0)
    assert h.effects.lines[-4:] == ["0 announce leave (within 2 s)", "0 update FINISHED",
                                    "0 announce close", "0 procs close"]


def test_a_kill_before_running_never_joins():
    h = Harness(job(health=True))
    h.kill()
    assert "announce join" not in " ".join(h.effects.lines)
    h.exit(sig=TERM)
    assert h.done and h.effects.lines[-2:] == ["0 announce close", "0 procs close"]


def test_a_missed_first_announcement_fails_the_task_with_aurora_s_message():
    h = Harness(job(health=True), bound_secs=1.5)
    h.wait(0.5)
    h.health(True)  # RUNNING at 0.5: the bound runs from the join
    assert h.owner.next_deadline_at == pytest.approx(h.clock.now + 1.5)
    h.clock.advance_to(h.owner.next_deadline_at)
    h.post(TimerFired(h.clock.now))
    assert h.effects.lines[-3:] == ["2 announce leave (within 2 s)", "2 health stop", "2 SIGTERM a[0]"]
    h.exit(sig=TERM)
    assert (h.owner.final_update.state, h.owner.final_update.message) == (TaskState.FAILED, TIMED_OUT_REASON)
    assert TIMED_OUT_REASON == "Creating Announcer Serverset timed out."


def test_a_first_announcement_in_time_leaves_no_deadline_and_no_failure():
    h = Harness(job(), bound_secs=1.5)
    assert h.owner.next_deadline_at == pytest.approx(h.clock.now + 1.5)
    h.wait(1)
    h.joined()
    assert h.owner.next_deadline_at is None
    h.wait(10)
    assert not h.done and h.owner.final_update is None


def test_a_leave_that_times_out_is_logged_and_the_stop_goes_on(caplog):
    h = Harness(job(), leaves=False)
    h.joined()
    h.kill()
    assert h.effects.lines[-2:] == ["0 announce leave (within 2 s)", "0 SIGTERM a[0]"]
    assert "announcer_leave_timeout" in caplog.text and "goes with the ZooKeeper session" in caplog.text
    assert "killed by the agent (KILL): the member was not deleted within 2 s" in caplog.text  # why it left


def test_a_bound_on_the_stop_bounds_the_leave_too():
    h = Harness(job(), stop_within_secs=2.0)
    h.joined()
    h.kill()
    assert h.effects.lines[-2:] == ["0 announce leave (within 0.5 s)", "0 SIGTERM a[0]"]


def test_an_exit_time_bounds_the_leave_and_the_close_to_a_share_of_what_is_left():
    """`stoker executor` after SHUTDOWN: ZooKeeper stalled must not eat the processes'
    grace, nor keep the close past the agent's shutdown grace (the agent destroys it then)."""
    h = Harness(job(), leaves=False)
    h.joined()
    h.exit_at = h.clock.now + 2.5
    h.kill()
    assert h.effects.lines[-2:] == ["0 announce leave (within 0.625 s)", "0 SIGTERM a[0]"]
    h.wait(0.5)
    h.exit(sig=TERM)
    h.owner.close()
    assert "0.5 announce close (within 0.5 s)" in h.effects.lines


def test_each_change_is_one_record_and_the_view_shows_the_last():
    h = Harness(job())
    h.joined("member_0000000003")
    h.post(AnnouncementChanged(task="t.0", view=h.announcer.view(), changes=()))  # nothing new
    h.wait(2)
    h.kill()
    h.exit(sig=TERM)
    states = [(r["state"], r["member"], r["since"]) for r in h.announce_records()]
    assert states == [("IDLE", None, 0.0), ("JOINED", "member_0000000003", 1000.0), ("LEFT", None, 1002.0),
                      ("CLOSED", None, 1002.0)]  # IDLE: from the start, where it will announce
    assert [r["wall"] for r in h.announce_records()] == [1000.0, 1000.0, 1002.0, 1002.0]
    view = replay(h.checkpoint.records).announcement
    assert (view.state, view.path, view.member) == ("CLOSED", PATH, None)


def test_while_the_task_runs_each_change_is_recorded_as_it_came():
    """A session that expired and came back: the LOST moment is recorded even though the
    announcer shows JOINED again by the time the owner handles it."""
    h = Harness(job())
    h.joined("member_0000000003")
    lost = AnnouncerView(path=PATH, member=None, state=MemberState.JOINING, reason="session expired",
                         since=1001.0, connection=Connection.LOST, first_joined=True)
    h.announcer.created("member_0000000004", since=1002.0)  # already back
    h.post(AnnouncementChanged(task="t.0", view=lost, changes=()))
    h.post(AnnouncementChanged(task="t.0", view=h.announcer.view(), changes=()))
    assert [(r["state"], r["member"], r["connection"]) for r in h.announce_records()][1:] == [
        ("JOINED", "member_0000000003", "CONNECTED"), ("JOINING", None, "LOST"),
        ("JOINED", "member_0000000004", "CONNECTED")]


def test_a_change_posted_before_the_leave_does_not_undo_it_in_the_record():
    h = Harness(job())
    stale = h.announcer.created("member_0000000003", since=1000.0)
    h.kill()  # leaves (LEFT recorded) before the queued JOINED change is handled
    h.post(stale)
    assert [r["state"] for r in h.announce_records()] == ["IDLE", "LEFT"]


def test_a_task_that_does_not_announce_has_no_announcement():
    h = Harness(job(), announce=False)
    h.kill()
    h.exit(sig=TERM)
    assert h.effects.lines == ["0 update STARTING", "0 spawn a[0]", "0 update RUNNING", "0 SIGTERM a[0]",
                               "0 update KILLED", "0 procs close"]
    assert replay(h.checkpoint.records).announcement is None
