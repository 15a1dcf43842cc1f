"""RunFacts: the pid and exit status of each run, bounded to the runs a later record may name."""
from __future__ import annotations

from executor.events import ExitStatus
from executor.task.runfacts import RunFacts


def test_a_process_restarted_many_times_keeps_two_runs_facts():
    facts = RunFacts()
    for run in range(10_000):
        facts.started("web", run, 1000 + run)
        facts.exited("web", run, ExitStatus(exit_code=1))
        facts.ended("web", run)
    assert len(facts) == 1  # the last ended run, for a WAITING → KILLED record of it
    assert facts.pid("web", 9_999) == 10_999
    assert facts.status("web", 9_999) == ExitStatus(exit_code=1)
    assert facts.pid("web", 9_998) is None


def test_the_last_ended_run_keeps_its_facts_while_the_next_one_runs():
    facts = RunFacts()
    facts.started("web", 0, 100)
    facts.exited("web", 0, ExitStatus(exit_code=3))
    facts.ended("web", 0)
    facts.started("web", 1, 101)
    assert (facts.pid("web", 0), facts.status("web", 0)) == (100, ExitStatus(exit_code=3))
    assert facts.pid("web", 1) == 101 and facts.status("web", 1) is None
    facts.exited("web", 1, ExitStatus(signal=9))
    facts.ended("web", 1)
    assert facts.pid("web", 0) is None and facts.status("web", 0) is None
    assert len(facts) == 1


def test_processes_are_kept_apart_and_a_late_exit_of_a_dropped_run_is_not_kept():
    facts = RunFacts()
    facts.started("a", 0, 10)
    facts.started("b", 0, 20)
    facts.ended("a", 0)  # given up on after SIGKILL: it exits later, if ever
    facts.started("a", 1, 11)
    facts.ended("a", 1)
    facts.exited("a", 0, ExitStatus(signal=9))  # run 0's late exit: its facts were dropped
    assert facts.status("a", 0) is None
    assert facts.pid("b", 0) == 20 and len(facts) == 2


def test_an_exit_that_comes_after_its_run_ended_is_kept():
    facts = RunFacts()
    facts.started("web", 0, 100)
    facts.ended("web", 0)  # LOST or given up on: its exit status comes later
    facts.exited("web", 0, ExitStatus(signal=9))
    assert facts.status("web", 0) == ExitStatus(signal=9)


def test_a_run_ended_twice_keeps_its_facts():
    facts = RunFacts()
    facts.started("web", 0, 100)
    facts.exited("web", 0, ExitStatus(exit_code=2))
    facts.ended("web", 0)
    facts.ended("web", 0)
    assert (facts.pid("web", 0), facts.status("web", 0)) == (100, ExitStatus(exit_code=2))


def test_a_run_that_never_started_ends_and_is_dropped_without_facts():
    facts = RunFacts()
    facts.ended("web", 0)  # its fork failed: no pid, no exit status
    facts.started("web", 1, 101)
    facts.ended("web", 1)
    assert facts.pid("web", 1) == 101 and len(facts) == 1


def test_an_older_run_ending_late_does_not_bring_back_its_dropped_facts():
    facts = RunFacts()
    facts.started("web", 0, 100)
    facts.started("web", 1, 101)
    facts.ended("web", 1)
    facts.ended("web", 0)  # told after the newer run's end
    facts.exited("web", 0, ExitStatus(exit_code=1))
    assert facts.status("web", 0) is None
    assert facts.pid("web", 1) == 101
