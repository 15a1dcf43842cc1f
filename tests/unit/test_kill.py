"""KillSequence: the staging of a kill, by tables. Pure: no threads, no clock but numbers."""
from __future__ import annotations

import pytest

from executor.task.kill import (
    CancelLifecycle,
    KillProcesses,
    KillSequence,
    KillState,
    StartLifecycle,
)

HOLD = 10.0  # graceful_shutdown_wait + shutdown_wait


def req(reason="KILL", grace=5.0, lifecycle=True, at=0.0, started=True):
    return ("request", reason, grace, lifecycle, at, started)


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
}


@pytest.mark.parametrize("hold, steps, expected", CASES.values(), ids=CASES.keys())
def test_kill_staging(hold, steps, expected):
    seq = KillSequence(hold)
    got = []
    for step in steps:
        if step[0] == "request":
            _, reason, grace, lifecycle, at, started = step
            commands = seq.request(reason, grace, lifecycle, at, processes_started=started)
        else:
            commands = seq.lifecycle_done(step[1])
        got.append((seq.state, commands))
    assert got == expected
