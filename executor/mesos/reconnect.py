"""When to SUBSCRIBE again, and when to give up on the agent (pure; time is an argument).

The driver reports how each SUBSCRIBE attempt ended (`SessionEnd`) with the monotonic time
and a jitter sample in [0, 1]; the policy answers `Retry(delay_secs, reason)` or
`GiveUp(ending, reason)`. It never sleeps, logs or reads a clock: the driver acts.

The rules (docs/mesos.md §15), checked in this order:

  1. A SHUTDOWN arrived (on this stream or an earlier one): never resubscribe.
  2. The agent rejected SUBSCRIBE (a 4xx, e.g. "Framework cannot be found" once the agent
     forgot this executor): a retry cannot help.
  3. Checkpointing is off (`MESOS_CHECKPOINT` is not "1") and the executor was subscribed:
     the agent will not recover it, so the first disconnect is the end.
  4. The outage has lasted the limit: `MESOS_RECOVERY_TIMEOUT` with checkpointing, else
     START_RETRY_SECS (an agent unreachable at start is retried that long). An outage
     starts when the driver starts, and again at every disconnect of a subscribed stream.
  5. Otherwise retry after a uniform random wait in [0, `MESOS_SUBSCRIPTION_BACKOFF_MAX`],
     at least RETRY_FLOOR_SECS, for every kind of failure (refused, 503, 404, EOF, a
     malformed stream), cut so that the last attempt lands at the limit. The agent's
     re-registration window after its restart is that maximum, so a longer wait could miss
     it.

How the driver ended (`Ending`) decides the executor's exit status.
"""
from __future__ import annotations

import enum

import attrs

START_RETRY_SECS = 5.0  # without checkpointing: how long an unreachable agent is retried at start
CALL_RETRY_CAP_SECS = 1.0  # transient UPDATE/MESSAGE failures are retried at least this often
# No retry, of a SUBSCRIBE or a call, comes sooner than this: MESOS_SUBSCRIPTION_BACKOFF_MAX
# may be 0 (the agent's --executor_reregistration_timeout), and an agent down for 2 s then got
# 17,354 SUBSCRIBE attempts, each with its log line.
RETRY_FLOOR_SECS = 0.05


class Ending(enum.Enum):
    """Why the driver stopped talking to the agent."""

    SHUTDOWN = "the agent sent SHUTDOWN"
    NEVER_SUBSCRIBED = "gave up before the agent ever answered SUBSCRIBED"
    AGENT_LOST = "gave up on an agent it had been subscribed to"
    STOPPED = "the executor stopped the driver"
    INTERNAL_ERROR = "the driver failed (a bug)"


@attrs.frozen(slots=True)
class SessionEnd:
    """How one SUBSCRIBE attempt ended."""

    reason: str  # in words, e.g. "the event stream broke (...)"
    subscribed: bool = False  # the agent answered SUBSCRIBED on this stream
    rejected: bool = False  # the agent refused the SUBSCRIBE itself (4xx)
    shutdown: bool = False  # a SHUTDOWN has arrived, now or on an earlier stream
    no_room: bool = False  # it could not be made here: no descriptor, thread or memory left


@attrs.frozen(slots=True)
class Retry:
    delay_secs: float
    reason: str  # why the last attempt ended


@attrs.frozen(slots=True)
class GiveUp:
    ending: Ending
    reason: str


class ReconnectPolicy:
    """The rules of the module docstring, for one driver's life."""

    def __init__(self, *, checkpoint: bool, recovery_timeout_secs: float,
                 backoff_max_secs: float, started_at: float) -> None:
        self._checkpoint = checkpoint
        self._limit_secs = recovery_timeout_secs if checkpoint else START_RETRY_SECS
        self._backoff_max_secs = backoff_max_secs
        self._outage_since = started_at  # an unreachable agent at start is an outage too
        self._lost = Ending.NEVER_SUBSCRIBED  # AGENT_LOST once it subscribed

    @property
    def limit_secs(self) -> float:
        return self._limit_secs

    def outage_secs(self, now: float) -> float:
        return now - self._outage_since

    def connect_timeout_secs(self, now: float, cap_secs: float) -> float:
        """How long the next SUBSCRIBE may wait (to connect; with an infinite cap, for its
        answer): what is left of the outage limit, at most `cap_secs`, at least 0.1 s."""
        return min(cap_secs, max(0.1, self._limit_secs - self.outage_secs(now)))

    def on_session_end(self, end: SessionEnd, now: float, jitter_sample: float) -> Retry | GiveUp:
        if not 0.0 <= jitter_sample <= 1.0:
            raise ValueError(f"jitter_sample {jitter_sample} is not within [0, 1]")
        if end.subscribed:
            self._lost = Ending.AGENT_LOST
            self._outage_since = now  # a new outage starts at this disconnect
        if end.shutdown:
            return GiveUp(Ending.SHUTDOWN, f"after SHUTDOWN; not resubscribing ({end.reason})")
        lost = self._lost
        if end.rejected:
            return GiveUp(lost, end.reason)
        if end.no_room and lost is Ending.NEVER_SUBSCRIBED:  # (later, a task's may be let go)
            return GiveUp(lost, f"{end.reason}: nothing this executor holds before its first "
                                "subscription can be let go")
        if not self._checkpoint and lost is Ending.AGENT_LOST:
            return GiveUp(lost, "checkpointing is off (MESOS_CHECKPOINT is not \"1\"), so the "
                                "executor shuts down at the first disconnect")
        outage = self.outage_secs(now)
        if outage >= self._limit_secs:
            what = "MESOS_RECOVERY_TIMEOUT" if self._checkpoint else "the start-up retry limit"
            return GiveUp(lost, f"the agent could not be reached for {outage:.1f}s, past {what} "
                                f"of {self._limit_secs:g}s; last error: {end.reason}")
        backoff = max(RETRY_FLOOR_SECS, jitter_sample * self._backoff_max_secs)
        return Retry(min(backoff, self._limit_secs - outage), end.reason)


def call_retry_delay_secs(backoff_max_secs: float, jitter_sample: float) -> float:
    """The wait before re-POSTing an UPDATE or MESSAGE that failed transiently: uniform in
    [cap/2, cap], cap = the back-off max bounded to [0.05 s, CALL_RETRY_CAP_SECS]."""
    if not 0.0 <= jitter_sample <= 1.0:
        raise ValueError(f"jitter_sample {jitter_sample} is not within [0, 1]")
    cap = min(CALL_RETRY_CAP_SECS, max(RETRY_FLOOR_SECS, backoff_max_secs))
    return cap / 2 + jitter_sample * (cap / 2)
