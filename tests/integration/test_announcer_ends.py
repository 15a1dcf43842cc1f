"""How the announcer's leave and close end (`executor/task/announcer.py`), on a real
ZooKeeper: a close while joined deletes its member itself before it ends the session, each
step one INFO line; one while ZooKeeper is down leaves the member to the session's end, and
the reconnect attempts meanwhile log nothing (kazoo's WARNING each held back). On
a ZooKeeper that does not answer, a wait still going on a fifth of a second in is said
once, with the seconds it has left, a leave's share is counted to the SIGKILL at the end
of the processes' grace, not to the later exit time, a leave hurried (a kill at once) ends
at once and says the member is not gone, and a delete not answered within the operation
timeout says so and is tried again. A close ends the session, kazoo's connection thread
with it, and is final: a join after it starts nothing, and a closed announcer that never
joined is never overdue."""
from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from executor.procs.exitby import ExitBy
from executor.task.announcer import LEAVE_SHARE, SAID_AFTER_SECS
from executor.task.membership import Connection, MemberState
from tests.integration.test_announcer import (  # noqa: F401 (fixtures too)
    announcement,
    announcers,
    joined,
    joined_then_stopped,
    members,
    reader,
    unique_root,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]


def _joined(private_zk, announcers, **kw):  # noqa: F811
    """Joined on the test's own server: (announcer, recorder)."""
    private_zk.start()
    announcer, recorder = announcers(announcement(private_zk.ensemble, unique_root()), **kw)
    announcer.join()
    wait_for(lambda: announcer.view().state is MemberState.JOINED, timeout_secs=10)
    return announcer, recorder


@pytest.mark.parametrize("how", ["leave", "close"])
def test_a_wait_still_going_a_fifth_of_a_second_in_says_how_long_it_has_left(private_zk, announcers, how):  # noqa: F811
    announcer, _ = _joined(private_zk, announcers)
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
    announcer, _ = _joined(private_zk, announcers, exit_by=exit_by)
    with private_zk.stalled():
        now = time.monotonic()
        exit_by.set(now + 20.0, kill_at=now + 2.0)
        assert announcer.leave(timeout_secs=30) is False
        took = time.monotonic() - now
    assert LEAVE_SHARE * 2.0 - 0.1 <= took < 3.0, took  # (the exit time's share: 5 s)


def test_a_close_while_joined_deletes_its_member_then_ends_the_session(zk, reader, announcers, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="executor.task.announcer")
    announcer, recorder, path, [member] = joined(zk, reader, announcers)
    announcer.close(timeout_secs=5)
    assert members(reader, path) == []
    assert recorder.states()[3:] == ["member:LEAVING", "member:LEFT", "member:CLOSED"]
    said = [(r.levelno, r.stoker_fields) for r in caplog.records
            if getattr(r, "stoker_event", "") == "announcer_member"][2:]
    line = {"task": "hello.3", "path": path}
    assert said == [
        (logging.INFO, {**line, "member": member, "from": "JOINED", "to": "LEAVING", "reason": "asked to leave"}),
        (logging.INFO, {**line, "member": None, "from": "LEAVING", "to": "LEFT", "reason": f"deleted {member}"}),
        (logging.INFO, {**line, "member": None, "from": "LEFT", "to": "CLOSED",
                        "reason": "closed: the ZooKeeper session is ended"})]
    (event,) = [e for e in recorder.events if e.changes[-1].new == "CLOSED"]
    assert (event.task, event.view.state, event.view.path) == ("hello.3", MemberState.CLOSED, path)


def test_a_leave_hurried_on_a_stalled_zookeeper_ends_at_once_and_says_the_member_is_not_gone(
        private_zk, announcers):  # noqa: F811
    announcer, _ = _joined(private_zk, announcers)
    with private_zk.stalled():
        announcer.hurry()  # a second Ctrl-C: no wait now, nor later
        assert announcer.leave(timeout_secs=30) is False  # the delete cannot have been answered
    wait_for(lambda: announcer.view().state is MemberState.LEFT, timeout_secs=10, message="left once it answers")


def _connection_threads() -> set[threading.Thread]:
    """kazoo's connection threads in this process (its handler spawns `zk_loop`)."""
    return {t for t in threading.enumerate() if t.name.endswith("(zk_loop)")}


@pytest.mark.parametrize("member", [True, False])
def test_a_close_ends_the_session_and_its_connection_thread(zk, reader, announcers, member):  # noqa: F811
    before = _connection_threads()
    if member:
        announcer, _, _, _ = joined(zk, reader, announcers)
    else:
        announcer, _ = announcers(announcement(zk.ensemble, unique_root()))
        announcer.join()
        wait_for(lambda: announcer.view().state is MemberState.JOINED, timeout_secs=10)
        announcer.leave(timeout_secs=5)
    (ours,) = _connection_threads() - before
    announcer.close(timeout_secs=5)
    ours.join(10)
    assert not ours.is_alive()  # the session ended (was: the client left connected for good)


def test_a_join_after_a_close_starts_nothing(zk, announcers):  # noqa: F811
    announcer, _ = announcers(announcement(zk.ensemble, unique_root()))
    announcer.join()
    wait_for(lambda: announcer.view().state is MemberState.JOINED, timeout_secs=10)
    announcer.close(timeout_secs=5)
    before = _connection_threads()
    announcer.join()  # a late RUNNING's, after the task's end
    assert _connection_threads() - before == set()  # no session started again
    assert announcer.view().state is MemberState.CLOSED


def test_a_closed_announcer_that_never_joined_is_never_overdue(private_zk, announcers):  # noqa: F811
    """ZooKeeper down from the start: the first announcement's bound would fail the task, but
    the task ended first (its close): nothing is overdue after that."""
    announcer, _ = announcers(announcement(private_zk.ensemble, unique_root()))
    announcer.join()
    assert announcer.first_join_deadline_at is not None
    announcer.close(timeout_secs=1)
    assert announcer.overdue(announcer.first_join_deadline_at + 3600) is False


def test_a_close_while_zookeeper_is_down_leaves_the_member_to_the_session_s_end(private_zk, announcers):  # noqa: F811
    announcer, recorder = _joined(private_zk, announcers)
    private_zk.stop()
    wait_for(lambda: announcer.view().connection is not Connection.CONNECTED, timeout_secs=10)
    announcer.close(timeout_secs=5)
    assert announcer.view().state is MemberState.CLOSED
    assert "member:LEAVING" not in recorder.states()  # no delete tried with no connection


def test_a_delete_zookeeper_does_not_answer_in_time_says_so_and_is_tried_again(private_zk, announcers):  # noqa: F811
    announcer, _ = _joined(private_zk, announcers, operation_timeout_secs=0.3)
    member = announcer.view().member
    with private_zk.stalled():  # shorter than the 2 s session: the connection stays
        assert announcer.leave(timeout_secs=0.6) is False
        view = announcer.view()
    assert (view.state, view.reason) == (MemberState.LEAVING, "could not delete the member: KazooTimeoutError; retrying")
    wait_for(lambda: announcer.view().state is MemberState.LEFT, timeout_secs=10, message="left once it answers")
    assert announcer.view().reason == f"deleted {member}"


def test_reconnecting_to_a_zookeeper_that_is_down_logs_no_line_per_attempt(private_zk, announcers, caplog):  # noqa: F811
    """kazoo logs a WARNING for each reconnect attempt; the announcer says the connection's
    changes once each, and only kazoo's errors get through. Its port, once the server is
    stopped, is a listener that counts four attempts (each closed as it comes)."""
    announcer, _ = _joined(private_zk, announcers)
    caplog.set_level(logging.DEBUG)
    private_zk.stop()
    attempts = 0
    with socket.create_server(("127.0.0.1", private_zk.port)) as down:  # takes each attempt, then closes it
        down.settimeout(10)
        while attempts < 4:
            down.accept()[0].close()
            attempts += 1
    kazoo = [r for r in caplog.records if r.name.startswith("kazoo") or r.name.endswith(".kazoo")]
    assert [r for r in kazoo if r.levelno < logging.ERROR] == [], [r.getMessage() for r in kazoo]
