"""The TaskOwner driven through long random sequences of events (Hypothesis' stateful
testing) over the owner rig's fake ports and a fake clock, with the contract's invariants
checked after every step (`tests/support/owner_model.py`): the status updates, the runs,
the checkpoint's replay against the owner's own state, and the clock.

A job is drawn first (one or two regular processes, maybe ordered, maybe final processes,
a health check, lifecycle endpoints); then the rules: a run exits, a health result comes,
time passes, the owner's deadline comes, a kill (the agent's, an operator's, a SHUTDOWN, a
second Ctrl-C), an operator's restart, the lifecycle endpoints end. Every step also goes to
a twin owner whose wall clock runs elsewhere: the two must act alike (no decision depends
on wall time).

CI runs a fixed, small set of examples (derandomized); `STOKER_HYPOTHESIS_PROFILE=deep`
runs thousands (docs/testing.md §11).
"""
from __future__ import annotations

import logging
import os

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from executor.events import (
    DaemonsExited,
    ExitStatus,
    HealthChecked,
    KillRequested,
    LifecycleDone,
    ProcessExited,
    RestartRequested,
    TaskState,
    TimerFired,
)
from executor.task.killing import StopBounds
from healthcheck.policy import Attempt
from tests.support.fake_ports import FakeProcs
from tests.support.owner_model import (
    SHAPES,
    HealthOracle,
    Shape,
    World,
    check_checkpoint,
    check_clock,
    check_runs,
    check_updates,
    stopping,
)
from tests.support.owner_rig import KILL, TERM, OwnerRig
from tests.support.owner_signals import SignalChecks

DEEP = os.environ.get("STOKER_HYPOTHESIS_PROFILE") == "deep"

# A passing run takes about 2 s; a failing one shrinks its sequence for a minute or two,
# which the tier's 60 s would cut short (Hypothesis then reports it as flaky, without the
# sequence).
pytestmark = pytest.mark.timeout(3600 if DEEP else 300)


@pytest.fixture(autouse=True)
def _quiet():
    """Thousands of steps would log a line each: the invariants are the test, not the log."""
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(logging.NOTSET)


def _rig(shape: Shape, wall: float) -> OwnerRig:
    rig = OwnerRig()
    rig.procs = FakeProcs(rig.effects, fail_spawns=(shape.cannot_start,))
    rig.own(shape.job(), wall_clock=lambda: wall, stop=StopBounds(*shape.stop))
    return rig


class OwnerMachine(SignalChecks, RuleBasedStateMachine):
    @initialize(shape=SHAPES, twin_wall=st.sampled_from([0.0, 1e9, -5.0]),
                early_kill=st.sampled_from([False] * 9 + [True]))
    def launch(self, shape, twin_wall, early_kill) -> None:
        self.shape, self.job, self.deps = shape, shape.job(), shape.deps()
        event(f"health check: {shape.health is not None}")
        self.health = self.job.health.kind.value != "none"
        self.rig = _rig(shape, 1.7e9)
        self.twin = _rig(shape, twin_wall)
        self.world = World(self.rig)
        self.oracle = HealthOracle(self.job)
        self.expect: tuple[TaskState, str] | None = None  # the first cause: the end it must give
        self.kills: list[tuple[float, float, bool]] = []  # (at, grace, endpoints first)
        self.stopping_since: float | None = None
        self.immediate = False  # an immediate kill came
        self.kill_began: float | None = None  # the first kill (a request, a failed health check)
        self.kill_all: list[float] = []  # each kill's `kill_all_at` (a SHUTDOWN's grace end)
        for rig in (self.rig, self.twin):
            rig.owner.start()
        if early_kill:  # before the first step (a KILL during launch): no regular process starts
            self.a_kill_comes(grace=0.5, endpoints=True, immediate=False, step=False)
        self._step()
        if early_kill:  # the final processes still run (test_planner.py: a kill runs them)
            assert all(self.job.task.process(p).final for p, _ in self.world.runs), \
                f"a KILL before the first step started {list(self.world.runs)}"

    # ---- driving both owners ----

    def _post(self, event: object) -> None:
        self.rig.owner.post(event)
        self.twin.owner.post(event)
        self._step()

    def _step(self) -> None:
        before = stopping(self.rig)
        for rig in (self.rig, self.twin):
            rig.step()
        self.world.read_effects()
        if self.stopping_since is None and stopping(self.rig):
            self.stopping_since = self.rig.clock.now
        self._check(before)
        if self.rig.done:  # what the sequences reached (--hypothesis-show-statistics)
            final = self.rig.reporter.updates[-1]
            event(f"ended {final.state.value}: {final.message.split(':')[0].split(' (')[0]}")

    def _reap(self) -> None:
        """The runs SIGKILLed exit before time passes (the kernel's SIGKILL is not waited
        for: the planner gives up on a run 1 s after it, as on one that can never exit)."""
        for run in self.world.alive():
            if run.killed_at is not None and not self.rig.done:
                run.alive = False
                self._post(ProcessExited(run.process, run.run, pid=0, status=ExitStatus(signal=KILL),
                                         at=self.rig.clock.now))
        if self.world.daemons and self.world.daemons_killed_at is not None and not self.rig.done:
            self.daemons_change(False)

    def _advance(self, secs: float) -> bool:
        """Time passes (the SIGKILLed runs reaped first), the owner woken at each of its
        deadlines on the way, as its queue's wait would; False once the task has ended."""
        if secs > 0:
            self._reap()
        target = self.rig.clock.now + secs
        while not self.rig.done and (at := self.rig.owner.next_deadline_at) is not None and at < target:
            for rig in (self.rig, self.twin):
                rig.clock.advance_to(at)
            self._post(TimerFired(at))
            self._reap()
        if self.rig.done:
            return False
        for rig in (self.rig, self.twin):
            rig.clock.advance_to(target)
        return True

    # ---- the rules ----

    @precondition(lambda self: not self.rig.done and self.world.alive())
    @rule(data=st.data(), how=st.sampled_from(["0", "1", "TERM", "KILL"]),
          after=st.sampled_from([0.0, 0.5, 2.0]))
    def a_run_exits(self, data, how, after) -> None:
        run = data.draw(st.sampled_from(self.world.alive()), label="run")
        if not self._advance(after):
            return
        if not run.alive:  # reaped as time passed (it had SIGKILL): the owner wakes all the same
            self._post(TimerFired(self.rig.clock.now))
            return
        run.alive = False
        status = ExitStatus(signal=TERM if how == "TERM" else KILL) if how in ("TERM", "KILL") \
            else ExitStatus(exit_code=int(how))
        self._post(ProcessExited(run.process, run.run, pid=0, status=status, at=self.rig.clock.now))

    @precondition(lambda self: not self.rig.done and "0 health start" in self.rig.effects.lines)
    @rule(ok=st.booleans(), after=st.sampled_from([0.0, 1.0]))
    def a_health_result_comes(self, ok, after) -> None:
        if not self._advance(after):
            return
        judged = not stopping(self.rig)  # else the result is dropped: it judges a service being stopped
        if judged:
            self.oracle.attempt(ok)
            if self.oracle.state == "FAILED" and self.expect is None:
                self.expect = (TaskState.FAILED, "health check failed")
                self.kill_began = self.rig.clock.now
        self._post(HealthChecked(Attempt.passed() if ok else Attempt.failed("HTTP 503"), 0.001,
                                 self.rig.clock.now))
        if judged and self.oracle.state == "RUNNING":  # the rules allow it: RUNNING is out
            assert TaskState.RUNNING in [u.state for u in self.rig.reporter.updates], "healthy, not RUNNING"
        if judged and self.oracle.state == "FAILED":  # the task stops at once
            assert stopping(self.rig), "the health check failed the task, but it goes on"

    @precondition(lambda self: not self.rig.done and "0 health start" in self.rig.effects.lines)
    @rule(oks=st.lists(st.booleans(), min_size=2, max_size=4))
    def health_results_come(self, oks) -> None:
        """A run of checks a second apart (one result at a time draws too few in a row to
        reach min_consecutive_successes or max_consecutive_failures before the task ends)."""
        for ok in oks:
            if self.rig.done:
                return
            self.a_health_result_comes(ok, 1.0)

    @rule(secs=st.sampled_from([0.1, 1.0, 3.0]))
    def time_passes(self, secs) -> None:
        if not self._advance(secs):
            self.after_the_end()
            return
        self._post(TimerFired(self.rig.clock.now))

    @precondition(lambda self: self.rig.done or self.rig.owner.next_deadline_at is not None)
    @rule()
    def the_deadline_comes(self) -> None:
        if self.rig.done:
            self.after_the_end()
            return
        self._reap()
        at = self.rig.owner.next_deadline_at
        if self.rig.done or at is None or not self._advance(at - self.rig.clock.now):
            return
        self._post(TimerFired(self.rig.clock.now))

    @precondition(lambda self: self.shape.kills or self.rig.done)
    @rule(grace=st.sampled_from([None, 0.5, 3.0]), endpoints=st.booleans(),
          immediate=st.sampled_from([False, False, False, True]),
          kill_all_in=st.sampled_from([None, None, 0.0, 1.0, 2.5]))
    def a_kill_comes(self, grace, endpoints, immediate, kill_all_in=None, step=True) -> None:
        if self.rig.done:
            self.after_the_end()
            return
        if self.expect is None:  # the first cause, a stop the processes' own end began included
            self.expect = (TaskState.KILLED, "killed by the agent")
        now = self.rig.clock.now
        default = self.shape.stop[0] if self.shape.stop[0] is not None else self.job.task.finalization_wait_secs
        self.kills.append((now, default if grace is None else grace, endpoints and self.job.lifecycle is not None))
        self.immediate |= immediate
        if self.kill_began is None:
            self.kill_began = now
        kill_all_at = None if kill_all_in is None else now + kill_all_in  # a SHUTDOWN's grace end
        if kill_all_at is not None:
            self.kill_all.append(kill_all_at)
        event = KillRequested("killed by the agent (KILL)", grace, now, use_lifecycle=endpoints, immediate=immediate,
                              kill_all_at=kill_all_at)
        if step:
            self._post(event)
        else:
            self.rig.owner.post(event)
            self.twin.owner.post(event)

    @precondition(lambda self: not self.rig.done and self.world.alive())
    @rule(data=st.data(), how=st.sampled_from(["0", "1", "TERM"]),
          other=st.sampled_from(["kill", "restart a", "restart b", "exit"]), exit_first=st.booleans())
    def two_events_in_one_step(self, data, how, other, exit_first) -> None:
        """A run's exit and another event queued before the owner looked: a step drains its
        whole queue, then the planner decides."""
        run = data.draw(st.sampled_from(self.world.alive()), label="run")
        run.alive = False
        events = [self._exit_event(run, how)]
        if other == "exit" and (others := self.world.alive()):
            second = data.draw(st.sampled_from(others), label="second run")
            second.alive = False
            events.append(self._exit_event(second, "0"))
        elif other.startswith("restart") and other[-1] in self.deps:
            self._note_restart(other[-1])
            events.append(RestartRequested(other[-1], self.rig.clock.now))
        if not exit_first:
            events.reverse()
        for event_ in events:
            self.rig.owner.post(event_)
            self.twin.owner.post(event_)
        if other == "kill" and self.shape.kills:  # queued after them, as the planner has not decided
            self.a_kill_comes(grace=None, endpoints=True, immediate=False, step=False)
        self._step()

    def _exit_event(self, run, how: str) -> ProcessExited:
        status = ExitStatus(signal=TERM) if how == "TERM" else ExitStatus(exit_code=int(how))
        return ProcessExited(run.process, run.run, pid=0, status=status, at=self.rig.clock.now)

    @rule(process=st.sampled_from(["a", "b", "f"]))
    def an_operator_restarts(self, process) -> None:
        if self.rig.done:
            self.after_the_end()
        elif process in self.deps:
            self._note_restart(process)
            self._post(RestartRequested(process, self.rig.clock.now))

    @precondition(lambda self: self.shape.kills and not self.rig.done and self.world.alive())
    @rule(process=st.sampled_from(["a", "b"]), endpoints=st.booleans(), kill_first=st.booleans())
    def a_restart_and_a_kill_in_one_step(self, process, endpoints, kill_first) -> None:
        """An operator's restart and a kill queued before the owner looked, in either order."""
        if not kill_first:
            self._note_restart(process)
            for rig in (self.rig, self.twin):
                rig.owner.post(RestartRequested(process, self.rig.clock.now))
        self.a_kill_comes(grace=None, endpoints=endpoints, immediate=False, step=False)
        if kill_first:
            for rig in (self.rig, self.twin):
                rig.owner.post(RestartRequested(process, self.rig.clock.now))
        self._step()

    def _note_restart(self, process: str) -> None:
        """The run of `process` alive while the task is not stopping is restarted from now."""
        if stopping(self.rig):
            return
        for run in self.world.alive():  # not one already stopping: that restart's time holds
            if run.process == process and run.termed_at is None and run.killed_at is None:
                run.restarted_at = self.rig.clock.now

    @precondition(lambda self: any("lifecycle start" in line for line in self.rig.effects.lines))
    @rule()
    def the_endpoints_end(self) -> None:
        if self.rig.done:
            self.after_the_end()
            return
        self._post(LifecycleDone("processes still running after /abortabortabort", self.rig.clock.now))

    @rule(alive=st.booleans())
    def daemons_change(self, alive) -> None:
        """A run left daemons (or the last of them exited): the supervisor's wake-up."""
        if self.rig.done:
            self.after_the_end()
            return
        if alive and (self.world.daemons or stopping(self.rig)):  # none are left once it stops
            return
        self.world.daemons = alive
        self.world.daemons_termed_at = self.world.daemons_killed_at = None
        for rig in (self.rig, self.twin):
            rig.procs.daemons_alive = alive
        self._post(DaemonsExited(self.rig.clock.now))

    def after_the_end(self) -> None:
        """Once the terminal update is out the owner was closed: every rule is then this
        check (Hypothesis' runs end at a step count, not at the task's end)."""
        assert self.rig.checkpoint.closed and self.rig.procs.closed
        assert self.rig.reporter.updates[-1].state.terminal

    # ---- the invariants ----

    def _check(self, stopping_before: bool) -> None:
        check_updates(self.rig, self.health)
        check_checkpoint(self.rig)
        check_runs(self.rig, self.world, self.job, self.deps, stopping_before)
        check_clock(self.rig)
        self._check_health()
        self._check_running()
        self._check_end()
        self._check_signals()
        assert self.twin.effects.lines == self.rig.effects.lines, "the wall clock changed a decision"
        assert [(u.state, u.message) for u in self.twin.reporter.updates] == \
            [(u.state, u.message) for u in self.rig.reporter.updates], "the wall clock changed an update"

    def _check_health(self) -> None:
        """The owner judged exactly the results that came while nothing stopped the task,
        as the rules count them."""
        policy = self.rig.owner._checks._policy
        if policy is None:
            return
        oracle = self.oracle
        assert (policy.attempts, policy.consecutive_failures, policy.consecutive_successes, policy.state.value) \
            == (oracle.attempts, oracle.failures, oracle.passes, oracle.state), (policy, vars(oracle))

    def _check_running(self) -> None:
        """RUNNING only once the processes started and, with a check, its rules allow it."""
        if not any(u.state is TaskState.RUNNING for u in self.rig.reporter.updates):
            return
        assert any(line.split()[1] == "spawn" for line in self.rig.effects.lines)
        if self.health:
            assert self.oracle.state in ("RUNNING", "FAILED") or self.oracle.passes >= self.oracle.need, \
                f"RUNNING after {self.oracle.attempts} attempts, {self.oracle.passes} passes in a row"

    def _check_end(self) -> None:
        """The end matches its first cause; FINISHED only when every regular process succeeded."""
        final = self.rig.owner.final_update
        if final is None:
            return
        if self.expect is not None:
            state, words = self.expect
            assert (final.state, words in final.message) == (state, True), (final, self.expect)
        if final.state is TaskState.FINISHED:  # the task's max_failures says how many may fail (0: any)
            ends = [v.state.value for v in self.rig.owner._planner.processes()
                    if not self.job.task.process(v.name).final]
            tolerated = self.job.task.max_failures
            assert set(ends) <= {"SUCCESS", "FAILED"} and (
                tolerated == 0 or ends.count("FAILED") < tolerated), f"FINISHED with {ends}"
        if final.state is TaskState.KILLED:
            assert self.kills, "KILLED without a kill"
        if "f" in self.shape.finals and self.kill_began is not None and not self.immediate \
                and self.shape.stop[2] is None and not self.kill_all:
            # a kill (or failed check) gives them their own budget, unless a bound on the stop cuts it
            assert ("f", 0) in self.world.runs, "a kill ended the task without its final processes"
        failed = [v.name for v in self.rig.owner._planner.processes()
                  if v.state.value == "FAILED" and not self.job.task.process(v.name).final]
        if not self.kills and self.expect is None:  # the processes decided the end
            tolerated = self.job.task.max_failures
            should_fail = 0 < tolerated <= len(failed)
            assert final.state is (TaskState.FAILED if should_fail else TaskState.FINISHED) or (
                final.state is TaskState.FAILED and "can never start" in final.message), (final, failed)
        assert not self.world.alive() or all(r.killed_at is not None for r in self.world.alive()), \
            f"the task ended with {self.world.alive()} running"

    def teardown(self) -> None:
        for rig in (self.rig, self.twin):
            if getattr(rig, "owner", None) is not None and not rig.done:
                rig.owner.close()


OwnerMachine.TestCase.settings = settings(
    max_examples=3000 if DEEP else 120, stateful_step_count=60 if DEEP else 40,
    deadline=None, derandomize=not DEEP, report_multiple_bugs=False)
TestOwnerMachine = OwnerMachine.TestCase
