"""The staging of a task's kill: lifecycle endpoints, then SIGTERM, then SIGKILL. PURE.

Owns which stage a kill is in and what each kill request (a KILL, a SHUTDOWN, a failed
health check, a Ctrl-C) or the end of the lifecycle endpoints asks the owner to do, as
commands; and `endpoint_wait`, what one endpoint's answer means for the wait after it. The
planner owns the signals themselves (SIGTERM at a time, SIGKILL a grace later, earlier
only); the lifecycle adapter owns the HTTP calls. No I/O, no clock, no threads, no logging:
`now` comes in as an argument.

    IDLE ──request; a lifecycle is configured, processes started, use_lifecycle──▶ LIFECYCLE
    IDLE ──request otherwise──▶ SIGNALS
    LIFECYCLE ──lifecycle_done(), or a request that skips the lifecycle──▶ SIGNALS
    any ──an immediate request (a second Ctrl-C)──▶ SIGNALS: SIGKILL now, no final processes

IDLE → LIFECYCLE starts the endpoints and tells the planner to hold every restart and send
SIGTERM only once the endpoints' waits are over (`hold_secs`), so the signals come even if
the endpoints never answer. When the endpoints finish early, the signals come at once.

A bound on the whole stop (`within_secs`, `stoker run --kill-grace`) puts SIGKILL at most
that long after the first request: the endpoints get at most `LIFECYCLE_SHARE` of it, so
that SIGTERM always has the rest, and the grace is cut to end at the bound.

A later request can only make the kill sooner: it may cut the lifecycle short (a SHUTDOWN
skips it), shorten the grace before SIGKILL, or — immediate — skip every wait left and the
final processes; never lengthen anything. A kill before any process started runs no
endpoints: there is nothing to ask to shut down, and nothing to signal.
"""
from __future__ import annotations

import enum
from typing import assert_never

import attrs

from config.words import number

# Answers that say the service has no such endpoint: nothing will act on the request, so
# waiting for the processes to exit would only delay SIGTERM (Aurora waits anyway).
NOT_IMPLEMENTED = frozenset({404, 405, 501})
# With a bound on the whole stop, the share of it the lifecycle endpoints may use.
LIFECYCLE_SHARE = 0.5


class KillState(enum.Enum):
    IDLE = "IDLE"  # no kill requested
    LIFECYCLE = "LIFECYCLE"  # the endpoints run; the planner holds the signals
    SIGNALS = "SIGNALS"  # the planner's SIGTERM → SIGKILL staging has the task


@attrs.frozen(slots=True)
class StartLifecycle:
    """Start the lifecycle endpoints (graceful, then shutdown) for `reason`; with a bound on
    the stop, their waits together end within `within_secs` (None: each its configured wait)."""

    reason: str
    within_secs: float | None = None


@attrs.frozen(slots=True)
class CancelLifecycle:
    """Stop the lifecycle endpoints: the signals come now instead."""

    reason: str


@attrs.frozen(slots=True)
class KillProcesses:
    """Tell the planner to stop the task: SIGTERM after `term_delay_secs`, SIGKILL
    `grace_secs` after that (the planner only ever moves both earlier); `skip_finals`: the
    final processes do not run (or are killed with the rest)."""

    reason: str
    grace_secs: float
    term_delay_secs: float = 0.0
    skip_finals: bool = False


KillCommand = StartLifecycle | CancelLifecycle | KillProcesses


@attrs.frozen(slots=True)
class _Held:
    """A kill whose signals wait for the lifecycle endpoints: its reason, the grace its
    SIGKILL will get, and when the endpoints' waits are over."""

    reason: str
    grace_secs: float
    ends_at: float


class KillSequence:
    """One task's kill staging. `hold_secs`: the lifecycle's waits (graceful_shutdown_wait +
    shutdown_wait), None when the task has no lifecycle endpoints; `within_secs`: a bound
    on every stop, lifecycle waits included (None: the waits, then the grace)."""

    def __init__(self, hold_secs: float | None, within_secs: float | None = None) -> None:
        self._hold_secs = hold_secs
        self._within_secs = None if within_secs is None else max(0.0, within_secs)
        self._state = KillState.IDLE
        self._held: _Held | None = None  # set while LIFECYCLE
        self._kill_by: float | None = None  # the bound's SIGKILL time, once a kill started

    @property
    def state(self) -> KillState:
        return self._state

    def request(self, reason: str, grace_secs: float, use_lifecycle: bool, now: float, *,
                processes_started: bool, immediate: bool) -> tuple[KillCommand, ...]:
        """A kill was asked for (the first one starts the staging; later ones can only hasten
        it). `grace_secs`: between SIGTERM and SIGKILL; `immediate`: SIGKILL now and skip
        the final processes (a second Ctrl-C)."""
        grace_secs = self._bounded(max(0.0, grace_secs), now)
        state = self._state
        if immediate:
            self._state = KillState.SIGNALS
            cancel = (CancelLifecycle(reason),) if state is KillState.LIFECYCLE else ()
            return (*cancel, KillProcesses(reason, 0.0, skip_finals=True))
        match state:
            case KillState.IDLE:
                return self._first(reason, grace_secs, use_lifecycle, now, processes_started)
            case KillState.LIFECYCLE:
                if not use_lifecycle:
                    self._state = KillState.SIGNALS
                    return (CancelLifecycle(reason), KillProcesses(reason, grace_secs))
                held = self._lifecycle()
                self._held = attrs.evolve(held, grace_secs=min(held.grace_secs, grace_secs))
                hold = max(0.0, held.ends_at - now)
                return (KillProcesses(reason, grace_secs, term_delay_secs=hold),)
            case KillState.SIGNALS:
                return (KillProcesses(reason, grace_secs),)
            case _:
                assert_never(state)

    def lifecycle_done(self, now: float) -> tuple[KillCommand, ...]:
        """The endpoints are done (or gave up): the held signals come now."""
        if self._state is not KillState.LIFECYCLE:
            return ()  # cut short already, or a stale report
        held = self._lifecycle()
        self._state = KillState.SIGNALS
        return (KillProcesses(held.reason, self._bounded(held.grace_secs, now)),)

    def _lifecycle(self) -> _Held:
        """The kill the endpoints hold (only called while LIFECYCLE, which always has one)."""
        assert self._held is not None
        return self._held

    def _bounded(self, grace_secs: float, now: float) -> float:
        """`grace_secs`, cut so that SIGKILL comes by the bound's time."""
        if self._kill_by is None:
            return grace_secs
        return min(grace_secs, max(0.0, self._kill_by - now))

    def _first(self, reason: str, grace_secs: float, use_lifecycle: bool, now: float,
               processes_started: bool) -> tuple[KillCommand, ...]:
        within = self._within_secs
        if within is not None:
            self._kill_by = now + within
            grace_secs = min(grace_secs, within)
        hold = self._hold_secs
        if hold is None or not use_lifecycle or not processes_started:
            self._state = KillState.SIGNALS
            return (KillProcesses(reason, grace_secs),)
        held_grace = grace_secs  # the grace the signals get once the endpoints are done
        if within is not None:  # SIGTERM after the endpoints, SIGKILL still at the bound
            hold = min(hold, within * LIFECYCLE_SHARE)
            grace_secs = min(grace_secs, within - hold)
        self._state = KillState.LIFECYCLE
        self._held = _Held(reason, held_grace, now + hold)
        return (KillProcesses(reason, grace_secs, term_delay_secs=hold),
                StartLifecycle(reason, within_secs=None if within is None else hold))


@attrs.frozen(slots=True)
class EndpointWait:
    """How long to wait after one lifecycle endpoint's answer, and the sentence that says so."""

    secs: float
    why: str


def endpoint_wait(answer: int | None, wait_secs: float, left_secs: float,
                  setting: str) -> EndpointWait:
    """After POSTing a lifecycle endpoint: `answer` is its HTTP status (None: it could not
    be reached), `wait_secs` the configured wait (named `setting`), `left_secs` what is left
    of the endpoints' time. Not reached, or answered 404/405/501 (no such endpoint): no wait.
    Any other answer: the configured wait, cut to what is left."""
    if answer is None:
        return EndpointWait(0.0, "not waiting: the endpoint could not be reached")
    if answer in NOT_IMPLEMENTED:
        return EndpointWait(0.0, f"not waiting: HTTP {answer} says the service does not "
                                 "implement it")
    secs = max(0.0, min(wait_secs, left_secs))
    cut = ", cut to fit the stop's bound" if secs < wait_secs else ""
    return EndpointWait(secs, f"waiting up to {number(secs)} s for the processes to exit "
                              f"({setting}={number(wait_secs)}{cut})")
