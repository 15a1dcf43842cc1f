"""The owner's side of a task's kill: the staged kill of `executor/task/kill.py`, carried out.

Owns, for one task: the `KillSequence` (which stage the kill is in) and the running
lifecycle endpoints, if any; turning each kill command into what it asks — the planner's
SIGTERM → SIGKILL staging, the endpoints started (`executor/task/lifecycle.py`, through the
owner's `LifecycleStarter` port) or cancelled; the grace a kill gets when its request names
none; one `kill_stage` log line and one `KillStep` for the reporter per stage the kill
reaches; and the bounds that SIGKILL whatever still runs of a stop, final processes
included (the stop timeout, a SHUTDOWN's grace end: `overdue`), deadlines the owner keeps
on its clock with its others (no timer thread: one may not be had, and the task has one
scheduler). What comes first in every kill — leaving the ServerSet, stopping the health
checks — stays with the owner, which calls `start` after it.

It decides nothing itself (the sequence and the planner do) and holds no task state but the
kill's: it is the owner's, called only from the owner's thread; the endpoints' progress and
end come back as `LifecycleProgress` and `LifecycleDone` on the owner's queue. So is `Held`:
the events the owner handles only after the planner decided on a kill (what came after it
began) or on a run's exit (a check's result, a kill behind it).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, assert_never

import attrs

from config.spec import JobSpec
from config.words import number
from executor.events import (
    DiskSampled,
    HealthChecked,
    KillRequested,
    KillStep,
    LifecycleDone,
    LifecycleProgress,
)
from executor.logs import log_event
from executor.task.planner import Decision, Planner

if TYPE_CHECKING:  # `kill.py`'s machine loads with a task's first kill, not before its first report
    from executor.task.kill import KillCommand, KillSequence, KillState
    from executor.task.ports import Lifecycle, LifecycleStarter, Reporter

logger = logging.getLogger(__name__)
KILL_MACHINE_AFTER_SECS = 0.5  # after the owner's first step: the kill's machine loaded, off the first report's way


@attrs.frozen(slots=True)
class StopBounds:
    """What a front-end bounds every stop of a task with (each None: no such bound).
    `grace_secs`: between SIGTERM and SIGKILL when a kill names none (None: the task's
    `finalization_wait`); `within_secs`: SIGKILL at most this long after the stop began, the
    lifecycle endpoints' waits included (`stoker run --kill-grace`); `timeout_secs`: the outer
    bound, final processes included (`stoker executor --stop-timeout-in-secs`, Thermos'
    stop_timeout_in_secs): that long after the first request's leave of the ServerSet (as
    Thermos bounds its runner's stop once its checkers, the announcer among them, stopped),
    whatever still runs is SIGKILLed; `exit_at`: when this process must be gone (`time.monotonic()`, None: no
    bound; `stoker executor`'s `ExitBy`, set at SHUTDOWN): a stop's leave of the ServerSet
    takes a share of what is left of it (`announcing.leave_within_secs`)."""

    grace_secs: float | None = None
    within_secs: float | None = None
    timeout_secs: float | None = None
    exit_at: Callable[[], float | None] | None = None


@attrs.frozen(slots=True)
class _Cut:
    """When whatever still runs of a stopping task is SIGKILLed, and the reason it gives."""

    at: float
    reason: str


def load_kill_machine(job: JobSpec) -> None:
    """Load the kill's machine (`kill.py`) now, while the task runs: a task's first kill,
    maybe weeks after its start, would load it from the installation then, after an
    upgrade in place the new version's module into this version's supervisor. Never
    raises: a load that fails now (its file unreadable, no memory) is made again by the
    first kill, as before (44 KiB of memory, with a killed run's words). A task with
    lifecycle endpoints loads their caller too (`lifecycle.py` and the HTTP it posts
    with): its kill starts there, and an upgrade's file failed the task (exit 70). So
    did `unsignalled.py`'s, loaded at the SIGKILL of a run that outlived its grace (its
    words: `stoker run` of 100 processes +12 KiB of USS, median of 14 pairs, from -32 to +60),
    and at the close of a task that left its cgroup. Loaded by the owner half a second into
    the task, and by `stoker run` before its restart line and wait: a service whose attempts each
    end sooner never loaded it, and a later attempt's close, hours of restarts on, loaded
    an upgrade's file (exit 70)."""
    try:
        from executor.procs import unsignalled  # noqa: F401  # a run's SIGKILL after its grace (`say_traced`)
        from executor.task import kill  # noqa: F401  # (loaded for later, read by `start`)
        from healthcheck import base  # noqa: F401  # a killed run's words (`signal_name`)
        if job.lifecycle is not None:
            from executor.task import lifecycle  # noqa: F401  # (read by the kill's `StartLifecycle`)
            from healthcheck import http_check, loopback  # noqa: F401  # (`post_endpoint`'s)
    except Exception as exc:  # MemoryError, OSError, an ImportError of a damaged file
        log_event(logger, logging.DEBUG, "kill_machine_not_loaded", reason=f"{type(exc).__name__}: {exc}")


class Killing:
    def __init__(self, job: JobSpec, *, planner: Planner, reporter: Reporter,
                 start_lifecycle: LifecycleStarter, post: Callable[[object], None],
                 clock: Callable[[], float], bounds: StopBounds) -> None:
        self._job = job
        self._planner = planner
        self._reporter = reporter
        self._start_lifecycle = start_lifecycle
        self._post = post
        self._clock = clock
        self._default_grace = bounds.grace_secs
        self._within_secs = bounds.within_secs
        self._sequence: KillSequence | None = None  # made with the first kill request (`_kill_sequence`)
        self._lifecycle: Lifecycle | None = None
        self._stop_timeout = bounds.timeout_secs
        self._cut: _Cut | None = None  # the earliest bound armed that SIGKILLs what still runs
        self._cut_made = False  # that SIGKILL was made: nothing is left for a later bound to cut
        self._machine_after: float | None = None  # when the kill's machine loads (`load_ahead`)
        self._machine_loaded = False

    def load_ahead(self) -> None:
        """At the owner's first step KILL_MACHINE_AFTER_SECS after its first (the looks after a
        start make one within the first second, its report long out), load the kill's machine
        (`load_kill_machine`): the code this supervisor started with, not an upgrade's. No
        timer of its own: a task that never steps again loads it at its kill."""
        if self._machine_loaded:
            return
        now = self._clock()
        if self._machine_after is None:
            self._machine_after = now + KILL_MACHINE_AFTER_SECS
        elif now >= self._machine_after:
            self._machine_loaded = True
            load_kill_machine(self._job)

    def grace(self, grace_secs: float | None) -> float:
        """The grace between SIGTERM and SIGKILL: the request's, else the front-end's
        default, else the task's `finalization_wait`."""
        if grace_secs is not None:
            return grace_secs
        if self._default_grace is not None:
            return self._default_grace
        return self._job.task.finalization_wait_secs

    def start(self, reason: str, ask: KillRequested, processes_started: bool) -> None:
        """A kill request: start the kill, or hasten the one under way. One taken once its
        `kill_all_at` has come (a SHUTDOWN that waited for the owner past its grace's end)
        starts no final process and no lifecycle endpoint: the bound's SIGKILL, after the
        decision on this request, would cut them at once."""
        from executor.task.kill import KillProcesses, KillState  # (the sequence's module, made just below)

        sequence = self._kill_sequence()
        before, now = sequence.state, self._clock()
        if before is KillState.IDLE and self._stop_timeout is not None:
            self._arm(now + self._stop_timeout,
                      f"the stop is not over {number(self._stop_timeout)} s after it began (--stop-timeout-in-secs)")
        if ask.kill_all_at is not None:
            self._arm(ask.kill_all_at, f"{ask.reason}: its grace is over")
        over = ask.kill_all_at is not None and ask.kill_all_at <= now  # no endpoints either, then
        commands = sequence.request(reason, self.grace(ask.grace_secs), ask.use_lifecycle and not over, now,
                                    processes_started=processes_started, immediate=ask.immediate)
        if over:
            commands = tuple(attrs.evolve(c, skip_finals=True) if isinstance(c, KillProcesses) else c
                             for c in commands)
        self._run(commands, reason, before, ask.immediate)

    def deadline_at(self) -> float | None:
        """When `overdue` will have a kill to make (None: never, as things are)."""
        return None if self._cut is None else self._cut.at

    def overdue(self, now: float) -> KillRequested | None:
        """The immediate kill (SIGKILL to what still runs, the final processes too) that the
        earliest bound armed asks for, once, when it has run out: the stop timeout's, or a
        request's `kill_all_at` (a SHUTDOWN's grace end)."""
        cut = self._cut
        if cut is None or now < cut.at:
            return None
        self._cut, self._cut_made = None, True
        return KillRequested(cut.reason, at=now, immediate=True)

    def _arm(self, at: float, reason: str) -> None:
        """A bound on the stop: at `at`, whatever still runs is SIGKILLed (`overdue`); the
        earliest one armed wins, and none once that SIGKILL was made."""
        if not self._cut_made and (self._cut is None or at < self._cut.at):
            self._cut = _Cut(at, reason)

    def _kill_sequence(self) -> KillSequence:
        """The kill's machine, made (and `kill.py` loaded) with the task's first kill request:
        a task that is never killed, and every task until its first report, does without it."""
        if self._sequence is None:
            from executor.task.kill import KillSequence

            self._sequence = KillSequence(_lifecycle_hold_secs(self._job), self._within_secs)
        return self._sequence

    def lifecycle_progress(self, detail: str) -> None:
        from executor.task.kill import KillState  # the endpoints run only within a kill: loaded

        if self._kill_sequence().state is KillState.LIFECYCLE:
            self.step("lifecycle", detail)

    def lifecycle_done(self, summary: str) -> None:
        sequence = self._kill_sequence()
        before = sequence.state
        self._run(sequence.lifecycle_done(self._clock()), summary, before, immediate=False)

    def regular_processes_gone(self) -> None:
        if self._lifecycle is not None:
            self._lifecycle.regular_processes_gone()

    def close(self) -> None:
        if self._lifecycle is not None:
            self._lifecycle.cancel()

    def _run(self, commands: tuple[KillCommand, ...], why: str, before: KillState, immediate: bool) -> None:
        from executor.task.kill import CancelLifecycle, KillProcesses, KillState, StartLifecycle

        now = self._clock()
        for command in commands:
            match command:
                case KillProcesses():
                    self._planner.kill(now, command.reason, command.grace_secs,
                                       term_delay_secs=command.term_delay_secs,
                                       skip_finals=command.skip_finals)
                    if immediate:
                        self.step("now", f"{command.reason}: SIGKILL to every process now; "
                                          "the waits left and the final processes are skipped")
                    elif before is KillState.LIFECYCLE and self._kill_sequence().state is KillState.SIGNALS:
                        self.step("signals", f"{why}: SIGTERM now, SIGKILL in "
                                              f"{number(command.grace_secs)} s unless every "
                                              "process has exited")
                case StartLifecycle():
                    port = self._job.lifecycle.port if self._job.lifecycle else None
                    log_event(logger, logging.INFO, "kill_stage", task=self._job.label,
                              stage="lifecycle", port=port, reason=command.reason)
                    self._lifecycle = self._start_lifecycle(
                        command.within_secs,
                        lambda detail: self._post(LifecycleProgress(detail, self._clock())),
                        lambda summary: self._post(LifecycleDone(summary, self._clock())))
                case CancelLifecycle():
                    if self._lifecycle is not None:
                        self._lifecycle.cancel()
                case _:
                    assert_never(command)

    def step(self, stage: str, reason: str) -> None:
        """One `kill_stage` line and `KillStep` for the reporter: what the stop waits for now
        (also the announcer's leave and close still waiting: `stage` "announcer")."""
        log_event(logger, logging.INFO, "kill_stage", task=self._job.label, stage=stage, reason=reason)
        self._reporter.on_transition(KillStep(stage, reason))


Late = HealthChecked | DiskSampled | KillRequested
AfterKill = KillRequested | LifecycleProgress | LifecycleDone


class Held:
    """The events the owner handles only after the planner's next decision, kept in their order
    (the owner's, on its thread). After a run's exit, a check's result waits for it (the task's
    last process may have ended: the planner says first), and so does a kill behind such a
    result (the first cause wins). Once a kill began, the lifecycle endpoints' answers (a
    refusal at once printed its "SIGTERM now" before the stop's "SIGTERM in 5 s") and later
    requests wait until the planner decided on it; the rest keeps its order (a run's exit
    behind the request was SIGTERMed, said ended by it)."""

    def __init__(self) -> None:
        self.exited = False  # a run ended since the planner last decided
        self.kill_begun = False  # a kill began (or hastened) since the planner last decided
        self.late: list[Late] = []  # after the decision: checks, then kills
        self.after_kill: list[AfterKill] = []

    def hold(self, event: object) -> bool:
        """Keep `event` for after the planner's next decision (True), or not (False: handle it now)."""
        if self.kill_begun and isinstance(event, AfterKill):
            self.after_kill.append(event)
            return True
        if self.exited and (isinstance(event, HealthChecked | DiskSampled)
                            or (self.late and isinstance(event, KillRequested))):
            self.late.append(event)
            return True
        return False

    def after_decision(self, decision: Decision, dispatch: Callable[[Late | AfterKill], None],
                       decide: Callable[[], Decision]) -> Decision:
        """Dispatch the events held for after `decision` (checks' results after an exit, kills
        after those; what came after a kill began), each batch followed by a decision."""
        self.exited = False
        if self.late:  # a check decides nothing if the task stopped meanwhile; a kill still does
            while self.late:
                dispatch(self.late.pop(0))
            decision = decide()
        while self.after_kill and not decision.phase.terminal:  # else the owner's close answers them
            # one at a time, each left held until taken: a kill among them holds what follows
            # it until the next decision, and a step that fails leaves the rest to the close
            while self.after_kill and not self.kill_begun:
                dispatch(self.after_kill.pop(0))
            decision = decide()
        return decision

    def left(self) -> list[Late | AfterKill]:
        """What is still held (a step that failed before it handled them), in order."""
        return [*self.late, *self.after_kill]


def _lifecycle_hold_secs(job: JobSpec) -> float | None:
    """How long the lifecycle endpoints may hold a kill's signals (None: no endpoints)."""
    spec = job.lifecycle
    return None if spec is None else spec.graceful_shutdown_wait_secs + spec.shutdown_wait_secs
