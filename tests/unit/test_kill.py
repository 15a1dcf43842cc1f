"""KillSequence: the staging of a kill, by tables. Pure: no threads, no clock but numbers."""
from __future__ import annotations

import pytest

from executor.task.kill import (
    CancelLifecycle,
    EndpointWait,
    KillProcesses,
    KillSequence,
    KillState,
    StartLifecycle,
    endpoint_wait,
)

HOLD = 10.0  # graceful_shutdown_wait + shutdown_wait


def req(reason="KILL", grace=5.0, lifecycle=True, at=0.0, started=True, now=False):
    return ("request", reason, grace, lifecycle, at, started, now)


def second(reason="second stop signal (SIGINT)", at=0.0):
    """An immediate request: a second Ctrl-C."""
    return req(reason, grace=30.0, at=at, now=True)


SKIP = dict(skip_finals=True)


def done(at):
    return ("done", at)


# Each row: the hold (None: no lifecycle endpoints), the steps, then (state, commands) after
# each step.
CASES = {
    "a kill with endpoints runs them, holding the signals until their waits are over": (
        HOLD, [req(at=100.0)],
        [(KillState.LIFECYCLE, (KillProcesses("KILL", 5.0, term_delay_secs=HOLD),
                                StartLifecycle("KILL")))]),
    "the endpoints finishing early bring the signals at once": (
        HOLD, [req(at=100.0), done(103.0), done(104.0)],
        [(KillState.LIFECYCLE, (KillProcesses("KILL", 5.0, term_delay_secs=HOLD),
                                StartLifecycle("KILL"))),
         (KillState.SIGNALS, (KillProcesses("KILL", 5.0),)),
         (KillState.SIGNALS, ())]),  # a stale report changes nothing
    "no endpoints configured: signals now": (
        None, [req()], [(KillState.SIGNALS, (KillProcesses("KILL", 5.0),))]),
    "a SHUTDOWN skips the endpoints": (
        HOLD, [req("SHUTDOWN", 2.0, lifecycle=False)],
        [(KillState.SIGNALS, (KillProcesses("SHUTDOWN", 2.0),))]),
    "a kill before any process started runs no endpoints": (
        HOLD, [req(started=False)], [(KillState.SIGNALS, (KillProcesses("KILL", 5.0),))]),
    "a SHUTDOWN during the endpoints cuts them short": (
        HOLD, [req(at=100.0), req("SHUTDOWN", 2.0, lifecycle=False, at=101.0), done(102.0)],
        [(KillState.LIFECYCLE, (KillProcesses("KILL", 5.0, term_delay_secs=HOLD),
                                StartLifecycle("KILL"))),
         (KillState.SIGNALS, (CancelLifecycle("SHUTDOWN"), KillProcesses("SHUTDOWN", 2.0))),
         (KillState.SIGNALS, ())]),
    "a second KILL during the endpoints shortens the grace, keeping their time": (
        HOLD, [req(at=100.0), req(grace=1.0, at=104.0), req(grace=60.0, at=105.0), done(106.0)],
        [(KillState.LIFECYCLE, (KillProcesses("KILL", 5.0, term_delay_secs=HOLD),
                                StartLifecycle("KILL"))),
         (KillState.LIFECYCLE, (KillProcesses("KILL", 1.0, term_delay_secs=6.0),)),
         (KillState.LIFECYCLE, (KillProcesses("KILL", 60.0, term_delay_secs=5.0),)),
         (KillState.SIGNALS, (KillProcesses("KILL", 1.0),))]),  # never lengthened
    "a later kill during the signals passes its grace on (the planner keeps the earlier)": (
        None, [req(grace=10.0), req(grace=2.0), req(grace=30.0)],
        [(KillState.SIGNALS, (KillProcesses("KILL", 10.0),)),
         (KillState.SIGNALS, (KillProcesses("KILL", 2.0),)),
         (KillState.SIGNALS, (KillProcesses("KILL", 30.0),))]),
    "the lifecycle waits end at their deadline even when asked late": (
        HOLD, [req(at=100.0), req(at=200.0)],
        [(KillState.LIFECYCLE, (KillProcesses("KILL", 5.0, term_delay_secs=HOLD),
                                StartLifecycle("KILL"))),
         (KillState.LIFECYCLE, (KillProcesses("KILL", 5.0, term_delay_secs=0.0),))]),
    "a negative grace is none": (
        None, [req(grace=-3.0)], [(KillState.SIGNALS, (KillProcesses("KILL", 0.0),))]),
    "the endpoints' end without a kill in that stage does nothing": (
        HOLD, [done(1.0)], [(KillState.IDLE, ())]),
    "a second Ctrl-C during the endpoints cancels them: SIGKILL now, no final processes": (
        HOLD, [req(at=100.0), second(at=100.5), done(101.0)],
        [(KillState.LIFECYCLE, (KillProcesses("KILL", 5.0, term_delay_secs=HOLD),
                                StartLifecycle("KILL"))),
         (KillState.SIGNALS, (CancelLifecycle("second stop signal (SIGINT)"),
                              KillProcesses("second stop signal (SIGINT)", 0.0, **SKIP))),
         (KillState.SIGNALS, ())]),
    "a second Ctrl-C during the grace: SIGKILL now, no final processes": (
        None, [req(grace=30.0), second()],
        [(KillState.SIGNALS, (KillProcesses("KILL", 30.0),)),
         (KillState.SIGNALS, (KillProcesses("second stop signal (SIGINT)", 0.0, **SKIP),))]),
    "an immediate first request skips everything": (
        HOLD, [second()], [(KillState.SIGNALS, (KillProcesses("second stop signal (SIGINT)", 0.0, **SKIP),))]),
}

# Each row: the hold, the bound on the whole stop, the steps, then (state, commands).
BOUNDED = {
    "the bound cuts the endpoints to half of it, and SIGKILL comes at the bound": (
        HOLD, 4.0, [req(grace=30.0, at=100.0), done(102.0)],
        [(KillState.LIFECYCLE, (KillProcesses("KILL", 2.0, term_delay_secs=2.0),
                                StartLifecycle("KILL", 2.0))),
         (KillState.SIGNALS, (KillProcesses("KILL", 2.0),))]),
    "endpoints that end early leave SIGTERM the rest of the bound, no more": (
        HOLD, 4.0, [req(grace=30.0, at=100.0), done(100.5)],
        [(KillState.LIFECYCLE, (KillProcesses("KILL", 2.0, term_delay_secs=2.0),
                                StartLifecycle("KILL", 2.0))),
         (KillState.SIGNALS, (KillProcesses("KILL", 3.5),))]),
    "short lifecycle waits are not stretched to the bound": (
        1.0, 10.0, [req(grace=30.0, at=0.0)],
        [(KillState.LIFECYCLE, (KillProcesses("KILL", 9.0, term_delay_secs=1.0),
                                StartLifecycle("KILL", 1.0)))]),
    "without endpoints the bound is the grace": (
        None, 1.0, [req(grace=30.0)], [(KillState.SIGNALS, (KillProcesses("KILL", 1.0),))]),
    "a grace shorter than the bound is kept": (
        None, 10.0, [req(grace=2.0)], [(KillState.SIGNALS, (KillProcesses("KILL", 2.0),))]),
    "a later request cannot pass the bound": (
        None, 4.0, [req(grace=30.0, at=0.0), req(grace=30.0, at=3.0)],
        [(KillState.SIGNALS, (KillProcesses("KILL", 4.0),)),
         (KillState.SIGNALS, (KillProcesses("KILL", 1.0),))]),
    "a request after the bound's time SIGKILLs at once": (
        None, 4.0, [req(grace=30.0, at=0.0), req(grace=30.0, at=5.5)],
        [(KillState.SIGNALS, (KillProcesses("KILL", 4.0),)),
         (KillState.SIGNALS, (KillProcesses("KILL", 0.0),))]),
    "endpoints done after the bound's time: SIGKILL with SIGTERM": (
        HOLD, 4.0, [req(grace=30.0, at=100.0), done(104.5)],
        [(KillState.LIFECYCLE, (KillProcesses("KILL", 2.0, term_delay_secs=2.0),
                                StartLifecycle("KILL", 2.0))),
         (KillState.SIGNALS, (KillProcesses("KILL", 0.0),))]),
    "a bound of 0 skips the endpoints' waits and SIGKILLs at once": (
        HOLD, 0.0, [req(at=0.0)],
        [(KillState.LIFECYCLE, (KillProcesses("KILL", 0.0, term_delay_secs=0.0),
                                StartLifecycle("KILL", 0.0)))]),
}


def play(seq: KillSequence, steps: list) -> list:
    got = []
    for step in steps:
        if step[0] == "request":
            _, reason, grace, lifecycle, at, started, now = step
            commands = seq.request(reason, grace, lifecycle, at, processes_started=started,
                                   immediate=now)
        else:
            commands = seq.lifecycle_done(step[1])
        got.append((seq.state, commands))
    return got


@pytest.mark.parametrize("hold, steps, expected", CASES.values(), ids=CASES.keys())
def test_kill_staging(hold, steps, expected):
    assert play(KillSequence(hold), steps) == expected


@pytest.mark.parametrize("hold, within, steps, expected", BOUNDED.values(), ids=BOUNDED.keys())
def test_a_bound_on_the_whole_stop(hold, within, steps, expected):
    """`stoker run --kill-grace`: SIGKILL by the bound, lifecycle waits included."""
    assert play(KillSequence(hold, within), steps) == expected


# What the endpoints' configured wait (5 s) becomes: waited in full, cut to `secs`, or none
# because the service says it does not implement the endpoint.
WAITS_IN_FULL = EndpointWait(5.0, "waiting up to 5 s for the processes to exit (graceful_shutdown_wait_secs=5)")


def cut_to(secs: float) -> EndpointWait:
    return EndpointWait(secs, f"waiting up to {secs:g} s for the processes to exit "
                              "(graceful_shutdown_wait_secs=5, cut to fit the stop's bound)")


def not_implemented(status: int) -> EndpointWait:
    return EndpointWait(0.0, f"not waiting: HTTP {status} says the service does not implement it")


# Each row: the answer (None: unreachable), the configured wait, what is left, the result.
WAITS = {
    "an answer waits the configured time": (200, 5.0, 10.0, WAITS_IN_FULL),
    "any other answer waits too (a 500 may still act on it)": (500, 5.0, 10.0, WAITS_IN_FULL),
    "501 Not Implemented: no wait": (501, 5.0, 10.0, not_implemented(501)),
    "404 Not Found: no wait": (404, 5.0, 10.0, not_implemented(404)),
    "405 Method Not Allowed: no wait": (405, 5.0, 10.0, not_implemented(405)),
    "no answer: no wait": (
        None, 5.0, 10.0, EndpointWait(0.0, "not waiting: the endpoint could not be reached")),
    "the wait is cut to what is left of the endpoints' time": (202, 5.0, 1.5, cut_to(1.5)),
    "nothing left: no wait": (200, 5.0, -0.2, cut_to(0.0)),
}


@pytest.mark.parametrize("answer, wait, left, expected", WAITS.values(), ids=WAITS.keys())
def test_what_an_endpoint_answer_means_for_the_wait(answer, wait, left, expected):
    assert endpoint_wait(answer, wait, left, "graceful_shutdown_wait_secs") == expected
