"""Every order of three of the events a task's owner takes, in every way of cutting them into
steps (each step one look at the queue, or, as `TaskOwner.run` does, the event it waited for
and then the rest): kill requests of each kind (an operator's `stoker kill`, a second one, a
stop signal, a SHUTDOWN, one handed over past its grace's end, a second Ctrl-C), a run's
exit, a failed health check, a disk sample over the limit, the lifecycle endpoints' answer
and their end, an operator's restart, and the stop timeout. Whatever the order: every request is answered once, last with the task's end;
nothing is reported after the end; each update comes after its checkpoint record; no event
is still held once a step is over; a run whose exit was posted is not signalled after it;
no wake-up at a deadline finds nothing to do; the stop is said before any of its stages; and
where the steps cut changes nothing of the end. The owner rig's fakes and a fake clock: no
process, thread or socket, and the same outcome on every run."""
from __future__ import annotations

import itertools
import signal
from collections.abc import Callable

import pytest

from config.spec import ProcessSpec
from executor.events import (
    ControlReply,
    DiskSampled,
    ExitStatus,
    HealthChecked,
    KillRequested,
    KillStep,
    PhaseTransition,
    ProcessExited,
    ProcessState,
    ProcessTransition,
    RestartRequested,
    TimerFired,
)
from executor.host.session import OPERATOR_KILL
from executor.task.killing import StopBounds
from executor.task.owner import TaskOwner
from executor.task.ports import OwnerPorts
from healthcheck.policy import Attempt
from tests.support.fake_ports import FakeChecker, FakeDisk, FakeHealthLoop, FakeLifecycle, RecordingReporter
from tests.support.owner_rig import LIFECYCLE, OwnerRig, job

pytestmark = pytest.mark.timeout(60)

LIMIT = 1000  # the task's disk, in bytes
STOP_TIMEOUT_SECS = 3.0
SPEC = job(ProcessSpec(name="a", cmdline="serve", max_failures=0, min_duration_secs=0.0), lifecycle=LIFECYCLE,
           health=True, finalization_wait_secs=5.0, disk_bytes=LIMIT)


class Said(RecordingReporter):
    """The reporter that keeps, in one list with the operators' answers, what was said; and
    finds each update's record in the checkpoint already."""

    def __init__(self, rig: Rig) -> None:
        super().__init__(rig.effects)
        self._rig = rig

    def on_transition(self, t) -> None:
        super().on_transition(t)
        self._rig.said.append(("transition", t))

    def on_update(self, u) -> None:
        records = [(r["to"], r["reason"]) for r in self._rig.checkpoint.records if r.get("kind") == "task"]
        assert (u.state.value, u.message) in records, f"update {u} before its record"
        super().on_update(u)
        self._rig.said.append(("update", u))


class Rig(OwnerRig):
    def __init__(self) -> None:
        super().__init__()
        self.said: list[tuple[str, object]] = []
        self.answers: dict[str, list[ControlReply]] = {}
        self.endpoints: tuple[Callable[[str], None], Callable[[str], None]] | None = None
        self.endpoints_over = False
        self.exits: dict[tuple[str, int], int] = {}  # each exit posted: how many effects came before it
        self.kill_posted = False  # an immediate kill (a second Ctrl-C) only ever comes after one
        self.reporter = Said(self)
        self.owner = TaskOwner(SPEC, OwnerPorts(
            procs=self.procs, open_checkpoint=lambda: self.checkpoint, reporter=self.reporter,
            checker=FakeChecker(), start_health=lambda checker, on_result: FakeHealthLoop(self.effects),
            start_lifecycle=self._lifecycle, announcer=None),
            sandbox="/sandbox", clock=self.clock, wall_clock=lambda: 0.0,
            disk=FakeDisk(self.clock, self.effects, LIMIT), stop=StopBounds(timeout_secs=STOP_TIMEOUT_SECS))
        self.owner.start()
        self.step()

    def _lifecycle(self, within: float | None, progress: Callable[[str], None],
                   done: Callable[[str], None]) -> FakeLifecycle:
        self.endpoints = (progress, done)
        return FakeLifecycle(self.effects, within)

    def reply(self, name: str) -> Callable[[ControlReply], None]:
        return self.answers.setdefault(name, []).append

    def kill(self, event: KillRequested) -> None:
        self.kill_posted = True
        self.owner.post(event)

    def exit(self, name: str, run: int, status: ExitStatus) -> bool:
        if (name, run) in self.exits:
            return False
        self.exits[name, run] = len(self.effects.lines)
        self.owner.post(ProcessExited(name, run, 101 + run, status, self.clock.now))
        return True

    def endpoints_end(self, summary: str) -> bool:
        if self.endpoints is None or self.endpoints_over:
            return False
        self.endpoints_over = True
        self.endpoints[1](summary)
        return True

    def latest_run(self) -> int:
        return max(t.run for t in self.reporter.transitions
                   if isinstance(t, ProcessTransition) and t.to is ProcessState.RUNNING)


def _now(rig: Rig) -> None:
    if rig.kill_posted:
        rig.kill(KillRequested("second stop signal (SIGINT)", at=rig.clock.now, immediate=True))


def _progress(rig: Rig) -> None:
    if rig.endpoints is not None and not rig.endpoints_over:
        rig.endpoints[0]("POST http://localhost:31000/quitquitquit answered HTTP 200")


def _timeout(rig: Rig) -> None:
    rig.clock.advance(STOP_TIMEOUT_SECS)
    rig.owner.post(TimerFired(rig.clock.now))


EVENTS: dict[str, Callable[[Rig], object]] = {
    "kill": lambda rig: rig.kill(KillRequested(OPERATOR_KILL, 4.0, rig.clock.now, reply=rig.reply("kill"))),
    "kill again": lambda rig: rig.kill(KillRequested(OPERATOR_KILL, 1.0, rig.clock.now, reply=rig.reply("again"))),
    "SIGTERM": lambda rig: rig.kill(KillRequested("stopped by SIGTERM", None, rig.clock.now)),
    "SHUTDOWN": lambda rig: rig.kill(KillRequested("executor shutting down (SHUTDOWN)", 1.0, rig.clock.now,
                                                   use_lifecycle=False, kill_all_at=rig.clock.now + 1.0)),
    "SHUTDOWN past its end": lambda rig: rig.kill(KillRequested(  # it waited for the owner past its grace
        "executor shutting down (SHUTDOWN)", 2.0, rig.clock.now, use_lifecycle=False, kill_all_at=rig.clock.now - 0.5)),
    "second Ctrl-C": _now,
    "exit": lambda rig: rig.exit("a", rig.latest_run(), ExitStatus(exit_code=3)),
    "health": lambda rig: rig.owner.post(HealthChecked(Attempt.failed("HTTP 503"), 0.0, rig.clock.now)),
    "disk": lambda rig: rig.owner.post(DiskSampled(LIMIT + 1, files=1, secs=0.1)),
    "endpoints answer": _progress,
    "endpoints end": lambda rig: rig.endpoints_end("lifecycle endpoints done"),
    "restart": lambda rig: rig.owner.post(RestartRequested("a", rig.clock.now, reply=rig.reply("restart"))),
    "stop timeout": _timeout,
}


def _step(rig: Rig, waited: bool) -> None:
    if waited and not rig.owner._queue.empty():
        rig.owner._handle(rig.owner._wait())  # `run`'s loop, between two steps
    rig.step()
    if not rig.done:
        assert not rig.owner._held.left(), "an event still held after its step"


def _to_the_end(rig: Rig) -> None:
    """What the world does next until the task ends: the signalled runs exit, the endpoints
    end, time passes to the owner's next deadline (which must find something to do)."""
    for _ in range(40):
        if rig.done:
            return
        signalled = [line.split()[1:] for line in rig.effects.lines if line.split()[1] in ("SIGTERM", "SIGKILL")]
        exited = [rig.exit(run[:-3], int(run[-2]), ExitStatus(signal=signal.Signals[sig])) for sig, run in signalled]
        if not any(exited) and not rig.endpoints_end("lifecycle endpoints done (their waits over)"):
            if rig.owner.next_deadline_at is None:  # a task that would run on: killed at last
                assert not rig.owner._status.killing, "a kill under way waits for nothing"
                rig.kill(KillRequested("killed by the agent (KILL)", 1.0, rig.clock.now))
            else:
                before = (len(rig.effects.lines), len(rig.said), len(rig.checkpoint.records))
                rig.clock.advance_to(max(rig.clock.now, rig.owner.next_deadline_at))
                rig.post(TimerFired(rig.clock.now))
                assert rig.done or (len(rig.effects.lines), len(rig.said), len(rig.checkpoint.records)) != before, (
                    "a wake-up at the owner's deadline found nothing to do")
                continue
        _step(rig, waited=False)
    raise AssertionError("the task did not end")


def _played(order: tuple[str, ...], cuts: set[int], waited: bool) -> Rig:
    rig = Rig()
    for i, name in enumerate(order):
        if rig.done:
            break
        EVENTS[name](rig)
        if i in cuts or i == len(order) - 1:
            _step(rig, waited)
    _to_the_end(rig)
    return rig


def _checked(rig: Rig) -> tuple[str, str]:
    """The task's end, once every property holds."""
    ends = [i for i, (kind, what) in enumerate(rig.said) if kind == "update" and what.state.terminal]
    assert len(ends) == 1, rig.said
    assert rig.said[ends[0] + 1:] == [], "said after the task's end"
    for name, answers in rig.answers.items():
        assert [a.done for a in answers][-1:] == [True] and sum(a.done for a in answers) == 1, (name, answers)
    for (process, run), posted in rig.exits.items():
        late = [line for line in rig.effects.lines[posted:] if line.split()[2:] == [f"{process}[{run}]"]
                and line.split()[1] in ("SIGTERM", "SIGKILL")]
        assert not late, f"{process}[{run}] signalled after its exit was posted: {late}"
    stop = [i for i, (_, t) in enumerate(rig.said) if isinstance(t, PhaseTransition)]
    stages = [i for i, (_, t) in enumerate(rig.said) if isinstance(t, KillStep)]
    assert not stages or (stop and stop[0] < stages[0]), "a stage of the stop said before the stop"
    end = rig.said[ends[0]][1]
    return end.state.value, end.message


@pytest.mark.parametrize("first", list(EVENTS))
def test_every_order_of_three_events_in_every_cut_into_steps(first):
    for rest in itertools.permutations([name for name in EVENTS if name != first], 2):
        order = (first, *rest)
        ends = {(cuts, waited): _checked(_played(order, set(cuts), waited))
                for cuts in ((), (0,), (1,), (0, 1)) for waited in (False, True)}
        assert len(set(ends.values())) == 1, (order, ends)
