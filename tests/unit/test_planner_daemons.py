"""The daemons a task's runs left (a run that exited 0 after daemonizing, as Aurora's own
e2e job does) in the planner: the owner tells it whether they still live; CLEANING stops them
with the regular processes (SIGTERM at the same time, SIGKILL at the same deadline) and waits
for them, and gives up on them 1 s after their SIGKILL. Fake clock, no threads, no sleeps."""
from __future__ import annotations

import signal

import pytest

from executor.events import ExitStatus, TaskPhase
from tests.support.planner_harness import Harness, proc, signals, task

TERM = int(signal.SIGTERM)
KILL = int(signal.SIGKILL)

pytestmark = pytest.mark.timeout(10)


def launched() -> Harness:
    """`serve` runs; `launch` exited 0 and left a daemon."""
    h = Harness(task(proc("serve"), proc("launch"), finalization_wait_secs=30.0))
    h.decide()
    h.exit("launch", 0)
    h.planner.daemons(True)
    return h


def test_a_kill_sigterms_the_daemons_with_the_runs_and_waits_for_them():
    h = launched()
    h.planner.kill(h.clock.now, "killed by the agent", grace_secs=3.0)
    d = h.decide()
    assert signals(d) == [("serve", TERM)] and d.signal_daemons == TERM
    assert "1 running process and the daemons the runs left: SIGTERM now" in d.reason
    d = h.exit("serve", 0)
    assert d.phase is TaskPhase.CLEANING and d.signal_daemons is None  # each signal once
    assert d.next_deadline_at == 1003.0  # their SIGKILL
    h.planner.daemons(False)  # the daemon exited at its SIGTERM
    assert h.decide().phase is TaskPhase.KILLED


def test_daemons_still_alive_at_the_deadline_are_sigkilled_then_given_up_on():
    h = launched()
    h.planner.kill(h.clock.now, "stop", grace_secs=2.0)
    h.decide()
    h.exit("serve", 0)
    h.clock.advance_to(1001.999)
    assert h.decide().signal_daemons is None
    h.clock.advance_to(1002.0)
    d = h.decide()
    assert d.signal_daemons == KILL and d.phase is TaskPhase.CLEANING
    assert d.next_deadline_at == 1002.25
    h.clock.advance_to(1002.249)  # SIGKILLed: they get 0.25 s to be reported gone
    assert h.decide().phase is TaskPhase.CLEANING
    h.clock.advance_to(1002.25)  # reported alive still: the owner's close kills what is left
    assert h.decide().phase is TaskPhase.KILLED


def test_the_end_of_the_regular_plan_stops_the_daemons_within_finalization_wait():
    h = Harness(task(proc("launch"), finalization_wait_secs=5.0))
    h.decide()
    h.planner.exited("launch", 0, ExitStatus(exit_code=0), h.clock.now)
    h.planner.daemons(True)
    d = h.decide()
    assert d.phase is TaskPhase.CLEANING and d.signal_daemons == TERM
    assert "stopping 0 running processes and the daemons the runs left (SIGKILL after 5 s)" in d.reason
    assert d.next_deadline_at == 1005.0
    h.planner.daemons(False)
    assert h.decide().phase is TaskPhase.SUCCESS


def test_without_daemons_nothing_changes():
    h = Harness(task(proc("serve"), finalization_wait_secs=30.0))
    assert h.decide().signal_daemons is None
    h.planner.kill(h.clock.now, "stop", grace_secs=3.0)
    d = h.decide()
    assert d.signal_daemons is None and "daemons" not in d.reason
    assert h.exit("serve", 0).phase is TaskPhase.KILLED


def test_daemons_in_the_active_phase_are_left_alone():
    h = launched()
    h.clock.advance(100.0)
    d = h.decide()
    assert d.phase is TaskPhase.ACTIVE and d.signal_daemons is None and d.next_deadline_at is None


def test_daemons_alone_are_woken_for_at_their_delayed_sigterm():
    h = launched()
    h.planner.kill(h.clock.now, "shutdown", grace_secs=3.0, term_delay_secs=10.0)
    assert h.decide().next_deadline_at == 1010.0
    d = h.exit("serve", 0)  # the lifecycle endpoints made it exit; the daemon lives on
    assert d.phase is TaskPhase.CLEANING and d.next_deadline_at == 1010.0
    h.clock.advance_to(1010.0)
    d = h.decide()
    assert d.signal_daemons == TERM and d.next_deadline_at == 1013.0
