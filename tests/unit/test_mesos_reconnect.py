"""The reconnect policy (reconnect.py) as tables: session ends in, Retry or GiveUp out.

Time is a number the test moves; a jitter sample stands for the driver's random draw. Each
story is a list of steps: how a SUBSCRIBE attempt ended, when, with which jitter, and what the
policy must answer.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.mesos.reconnect import (
    RETRY_FLOOR_SECS,
    START_RETRY_SECS,
    Ending,
    GiveUp,
    ReconnectPolicy,
    Retry,
    SessionEnd,
    call_retry_delay_secs,
)

BACKOFF = 0.3
RECOVERY = 10.0

REFUSED = SessionEnd("SUBSCRIBE failed: ConnectionError: [Errno 111] Connection refused")
UNAVAILABLE = SessionEnd("SUBSCRIBE failed: HTTP 503: Agent has not finished recovery")
EOF = SessionEnd("the agent closed the event stream (EOF)", subscribed=True)
BROKEN = SessionEnd("the event stream broke (aborted)", subscribed=True)
MALFORMED = SessionEnd("the agent sent a malformed event stream (...)", subscribed=True)
AFTER_SHUTDOWN = SessionEnd("the agent closed the event stream (EOF)", subscribed=True,
                            shutdown=True)
SHUTDOWN_ONLY = SessionEnd("the agent closed the event stream (EOF)", shutdown=True)
REJECTED = SessionEnd("the agent rejected SUBSCRIBE: HTTP 400: Framework cannot be found",
                      rejected=True)
NO_ROOM = SessionEnd("SUBSCRIBE failed: no file descriptor is left: Too many open files (ulimit -n)",
                     no_room=True)


def policy(checkpoint: bool = True) -> ReconnectPolicy:
    return ReconnectPolicy(checkpoint=checkpoint, recovery_timeout_secs=RECOVERY,
                           backoff_max_secs=BACKOFF, started_at=0.0)


def give_up(ending: Ending, *words: str):
    return ("give up", ending, words)


STORIES = {
    "an agent unreachable at start is retried within the back-off max": (True, [
        (REFUSED, 0.1, 0.5, Retry(0.15, REFUSED.reason)),
        (UNAVAILABLE, 0.3, 1.0, Retry(BACKOFF, UNAVAILABLE.reason)),
        (REFUSED, 0.6, 0.0, Retry(RETRY_FLOOR_SECS, REFUSED.reason)),
    ]),
    "with checkpointing, an agent never reached is given up at MESOS_RECOVERY_TIMEOUT": (True, [
        (REFUSED, 9.9, 1.0, Retry(pytest.approx(0.1), REFUSED.reason)),  # cut at the limit
        (REFUSED, 10.0, 1.0, give_up(Ending.NEVER_SUBSCRIBED, "reached for 10.0s",
                                     "past MESOS_RECOVERY_TIMEOUT of 10s",
                                     "last error: SUBSCRIBE failed: ConnectionError")),
    ]),
    "without checkpointing, an agent never reached is given up after START_RETRY_SECS": (False, [
        (REFUSED, 4.0, 1.0, Retry(BACKOFF, REFUSED.reason)),
        (REFUSED, START_RETRY_SECS, 0.0, give_up(Ending.NEVER_SUBSCRIBED,
                                                 "past the start-up retry limit of 5s")),
    ]),
    "without checkpointing, the first disconnect is the end": (False, [
        (REFUSED, 1.0, 0.5, Retry(0.15, REFUSED.reason)),
        (EOF, 2.0, 0.5, give_up(Ending.AGENT_LOST, "checkpointing is off (MESOS_CHECKPOINT is not \"1\"), "
                                "so the executor shuts down at the first disconnect")),
    ]),
    "with checkpointing, a disconnect starts a new outage, however late": (True, [
        (EOF, 100.0, 0.5, Retry(0.15, EOF.reason)),
        (REFUSED, 109.9, 1.0, Retry(pytest.approx(0.1), REFUSED.reason)),
        (UNAVAILABLE, 110.0, 1.0, give_up(Ending.AGENT_LOST, "reached for 10.0s",
                                          "MESOS_RECOVERY_TIMEOUT of 10s", "HTTP 503")),
    ]),
    "every outage gets the whole recovery timeout": (True, [
        (BROKEN, 5.0, 0.0, Retry(RETRY_FLOOR_SECS, BROKEN.reason)),
        (REFUSED, 14.0, 0.0, Retry(RETRY_FLOOR_SECS, REFUSED.reason)),
        (MALFORMED, 14.5, 0.0, Retry(RETRY_FLOOR_SECS, MALFORMED.reason)),  # subscribed again, dropped
        (REFUSED, 24.4, 0.0, Retry(RETRY_FLOOR_SECS, REFUSED.reason)),
    ]),
    "after SHUTDOWN there is no resubscription, even with checkpointing": (True, [
        (AFTER_SHUTDOWN, 1.0, 0.5, give_up(Ending.SHUTDOWN, "after SHUTDOWN; not resubscribing",
                                           "(EOF)")),
    ]),
    "a stream holding only SHUTDOWN ends it too": (False, [
        (SHUTDOWN_ONLY, 0.2, 0.5, give_up(Ending.SHUTDOWN, "after SHUTDOWN")),
    ]),
    "a SUBSCRIBE rejected at start is never retried": (True, [
        (REJECTED, 0.1, 0.5, give_up(Ending.NEVER_SUBSCRIBED, "HTTP 400",
                                     "Framework cannot be found")),
    ]),
    "a first SUBSCRIBE with no room to be made (no descriptor) is given up at once": (True, [
        (NO_ROOM, 0.1, 0.5, give_up(Ending.NEVER_SUBSCRIBED, NO_ROOM.reason,
                                    "nothing this executor holds before its first subscription can be let go")),
    ]),
    "a later one is retried: a task's descriptors may be let go meanwhile": (True, [
        (EOF, 1.0, 0.5, Retry(0.15, EOF.reason)),
        (NO_ROOM, 1.2, 0.5, Retry(0.15, NO_ROOM.reason)),
    ]),
    "a SUBSCRIBE rejected after an agent restart means the agent forgot the executor": (True, [
        (EOF, 1.0, 0.5, Retry(0.15, EOF.reason)),
        (REJECTED, 1.2, 0.5, give_up(Ending.AGENT_LOST, "Framework cannot be found")),
    ]),
}


@pytest.mark.parametrize("checkpoint, steps", STORIES.values(), ids=list(STORIES))
def test_reconnect_stories(checkpoint, steps):
    rules = policy(checkpoint)
    for i, (end, now, jitter, expected) in enumerate(steps):
        decision = rules.on_session_end(end, now, jitter)
        if isinstance(expected, tuple):
            _, ending, words = expected
            assert isinstance(decision, GiveUp), f"step {i}: {decision}"
            assert decision.ending is ending, f"step {i}: {decision}"
            for word in words:
                assert word in decision.reason, f"step {i}: {word!r} not in {decision.reason!r}"
        else:
            assert decision == expected, f"step {i}"


def test_a_back_off_max_of_zero_still_waits_the_floor():
    # MESOS_SUBSCRIPTION_BACKOFF_MAX=0ns: 17,354 SUBSCRIBE attempts in a 2 s outage
    rules = ReconnectPolicy(checkpoint=True, recovery_timeout_secs=RECOVERY, backoff_max_secs=0.0,
                            started_at=0.0)
    assert rules.on_session_end(REFUSED, 0.1, 0.7) == Retry(RETRY_FLOOR_SECS, REFUSED.reason)
    assert rules.on_session_end(REFUSED, 9.99, 0.7).delay_secs == pytest.approx(0.01)  # the limit


@pytest.mark.parametrize("now, connect_timeout", [
    (0.0, 5.0),  # capped by the transport's own connect timeout
    (7.0, 3.0),  # what is left of the outage
    (9.95, 0.1),  # never below 0.1 s
    (30.0, 0.1),
])
def test_connect_timeout_is_what_is_left_of_the_outage(now, connect_timeout):
    assert policy().connect_timeout_secs(now, cap_secs=5.0) == pytest.approx(connect_timeout)


@settings(max_examples=200, deadline=None)
@given(
    checkpoint=st.booleans(),
    steps=st.lists(st.tuples(st.sampled_from([REFUSED, UNAVAILABLE, EOF, BROKEN, MALFORMED]),
                             st.floats(0.0, 3.0), st.floats(0.0, 1.0)), max_size=40))
def test_no_wait_exceeds_the_back_off_max_nor_passes_the_limit(checkpoint, steps):
    rules = policy(checkpoint)
    now, outage_since = 0.0, 0.0
    for end, gap, jitter in steps:
        now += gap
        decision = rules.on_session_end(end, now, jitter)
        if end.subscribed:
            outage_since = now
        if isinstance(decision, GiveUp):
            assert decision.ending in (Ending.AGENT_LOST, Ending.NEVER_SUBSCRIBED)
            return
        assert 0.0 <= decision.delay_secs <= BACKOFF
        assert now + decision.delay_secs <= outage_since + rules.limit_secs + 1e-9
        now += decision.delay_secs


@pytest.mark.parametrize("jitter", [-0.1, 1.5])
def test_a_jitter_sample_outside_0_1_is_refused(jitter):
    with pytest.raises(ValueError, match="not within"):
        policy().on_session_end(REFUSED, 0.1, jitter)
    with pytest.raises(ValueError, match="not within"):
        call_retry_delay_secs(BACKOFF, jitter)


@pytest.mark.parametrize("backoff_max, jitter, delay", [
    (0.3, 0.0, 0.15), (0.3, 1.0, 0.3),  # uniform in [max/2, max]
    (2.0, 0.0, 0.5), (2.0, 1.0, 1.0),  # at most 1 s between tries, whatever the back-off
    (0.0, 0.0, 0.025), (0.0, 1.0, 0.05),  # and at least 50 ms
])
def test_call_retries_wait_half_to_all_of_the_capped_back_off(backoff_max, jitter, delay):
    assert call_retry_delay_secs(backoff_max, jitter) == pytest.approx(delay)
