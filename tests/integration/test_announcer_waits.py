"""How long the announcer's leave and close wait (`executor/task/announcer.py`) on a real
ZooKeeper that does not answer: a wait still going on a fifth of a second in is said once,
with the seconds it has left; a leave's share is counted to the SIGKILL at the end of the
processes' grace, not to the later exit time."""
from __future__ import annotations

import time

import pytest

from executor.procs.exitby import ExitBy
from executor.task.announcer import LEAVE_SHARE, SAID_AFTER_SECS
from executor.task.membership import MemberState
from tests.integration.test_announcer import announcement, announcers, unique_root  # noqa: F401
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]


def _joined(private_zk, announcers, **kw):  # noqa: F811
    private_zk.start()
    announcer, _ = announcers(announcement(private_zk.ensemble, unique_root()), **kw)
    announcer.join()
    wait_for(lambda: announcer.view().state is MemberState.JOINED, timeout_secs=10)
    return announcer


@pytest.mark.parametrize("how", ["leave", "close"])
def test_a_wait_still_going_a_fifth_of_a_second_in_says_how_long_it_has_left(private_zk, announcers, how):  # noqa: F811
    announcer = _joined(private_zk, announcers)
    told: list[float] = []
    with private_zk.stalled():
        getattr(announcer, how)(timeout_secs=1.0, waiting=told.append)
    assert len(told) == 1, told
    assert 1.0 - SAID_AFTER_SECS - 0.3 <= told[0] <= 1.0 - SAID_AFTER_SECS, told


def test_a_wait_over_at_once_says_nothing(zk, announcers):  # noqa: F811
    announcer, _ = announcers(announcement(zk.ensemble, unique_root()))
    announcer.join()
    wait_for(lambda: announcer.view().state is MemberState.JOINED, timeout_secs=10)
    told: list[float] = []
    assert announcer.leave(timeout_secs=5.0, waiting=told.append) is True
    assert told == []


def test_a_leave_takes_its_share_of_what_is_left_until_the_sigkill_not_the_exit_time(private_zk, announcers):  # noqa: F811
    """SHUTDOWN's exit time 20 s away, the processes' SIGKILL 2 s away: a leave on a stalled
    ZooKeeper gives up after its share of the 2 s (0.5 s), not of the 20 (5 s)."""
    exit_by = ExitBy()
    announcer = _joined(private_zk, announcers, exit_by=exit_by)
    with private_zk.stalled():
        now = time.monotonic()
        exit_by.set(now + 20.0, kill_at=now + 2.0)
        assert announcer.leave(timeout_secs=30) is False
        took = time.monotonic() - now
    assert LEAVE_SHARE * 2.0 - 0.1 <= took < 3.0, took  # (the exit time's share: 5 s)
