"""The staging of a task's kill: lifecycle endpoints, then SIGTERM, then SIGKILL. PURE.

Owns which stage a kill is in and what each kill request (a KILL, a SHUTDOWN, a failed
health check) or the end of the lifecycle endpoints asks the owner to do, as commands. The
planner owns the signals themselves (SIGTERM at a time, SIGKILL a grace later, earlier
only); the lifecycle adapter owns the HTTP calls. No I/O, no clock, no threads, no logging:
`now` comes in as an argument.

    IDLE ──request; a lifecycle is configured, processes started, use_lifecycle──▶ LIFECYCLE
    IDLE ──request otherwise──▶ SIGNALS
    LIFECYCLE ──lifecycle_done(), or a request that skips the lifecycle──▶ SIGNALS

IDLE → LIFECYCLE starts the endpoints and tells the planner to hold every restart and send
SIGTERM only once the endpoints' waits are over (`hold_secs`), so the signals come even if
the endpoints never answer. When the endpoints finish early, the signals come at once.

A later request can only make the kill sooner: it may cut the lifecycle short (a SHUTDOWN
skips it) or shorten the grace before SIGKILL, never lengthen either. A kill before any
process started runs no endpoints: there is nothing to ask to shut down, and nothing to
signal.
"""
from __future__ import annotations

import enum
from typing import assert_never

import attrs


class KillState(enum.Enum):
    IDLE = "IDLE"  # no kill requested
    LIFECYCLE = "LIFECYCLE"  # the endpoints run; the planner holds the signals
    SIGNALS = "SIGNALS"  # the planner's SIGTERM → SIGKILL staging has the task


@attrs.frozen(slots=True)
class StartLifecycle:
    """Start the lifecycle endpoints (graceful, then shutdown) for `reason`."""

    reason: str


@attrs.frozen(slots=True)
class CancelLifecycle:
    """Stop the lifecycle endpoints: the signals come now instead."""

    reason: str


@attrs.frozen(slots=True)
class KillProcesses:
    """Tell the planner to stop the task: SIGTERM after `term_delay_secs`, SIGKILL
    `grace_secs` after that (the planner only ever moves both earlier)."""

    reason: str
    grace_secs: float
    term_delay_secs: float = 0.0


KillCommand = StartLifecycle | CancelLifecycle | KillProcesses


class KillSequence:
    """One task's kill staging. `hold_secs`: the lifecycle's waits (graceful_shutdown_wait +
    shutdown_wait), None when the task has no lifecycle endpoints."""

    def __init__(self, hold_secs: float | None) -> None:
        self._hold_secs = hold_secs
        self._state = KillState.IDLE
        self._reason = ""
        self._grace_secs = 0.0
        self._lifecycle_ends_at = 0.0

    @property
    def state(self) -> KillState:
        return self._state

    def request(self, reason: str, grace_secs: float, use_lifecycle: bool, now: float, *,
                processes_started: bool) -> tuple[KillCommand, ...]:
        """A kill was asked for (the first one starts the staging; later ones can only hasten
        it). `grace_secs`: between SIGTERM and SIGKILL."""
        grace_secs = max(0.0, grace_secs)
        state = self._state
        match state:
            case KillState.IDLE:
                return self._first(reason, grace_secs, use_lifecycle, now, processes_started)
            case KillState.LIFECYCLE:
                if not use_lifecycle:
                    self._state = KillState.SIGNALS
                    return (CancelLifecycle(reason), KillProcesses(reason, grace_secs))
                self._grace_secs = min(self._grace_secs, grace_secs)
                hold = max(0.0, self._lifecycle_ends_at - now)
                return (KillProcesses(reason, grace_secs, term_delay_secs=hold),)
            case KillState.SIGNALS:
                return (KillProcesses(reason, grace_secs),)
            case _:
                assert_never(state)

    def lifecycle_done(self, now: float) -> tuple[KillCommand, ...]:
        """The endpoints are done (or gave up): the held signals come now."""
        if self._state is not KillState.LIFECYCLE:
            return ()  # cut short already, or a stale report
        self._state = KillState.SIGNALS
        return (KillProcesses(self._reason, self._grace_secs),)

    def _first(self, reason: str, grace_secs: float, use_lifecycle: bool, now: float,
               processes_started: bool) -> tuple[KillCommand, ...]:
        self._reason = reason
        self._grace_secs = grace_secs
        hold = self._hold_secs
        if hold is None or not use_lifecycle or not processes_started:
            self._state = KillState.SIGNALS
            return (KillProcesses(reason, grace_secs),)
        self._state = KillState.LIFECYCLE
        self._lifecycle_ends_at = now + hold
        return (KillProcesses(reason, grace_secs, term_delay_secs=hold), StartLifecycle(reason))
