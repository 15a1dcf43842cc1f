"""The process connector reader (tests/support/proc_connector.py) parses the kernel's real
events: a child this test starts forks, execs and exits, and the reader reports each with its
pid, its parent and a CLOCK_MONOTONIC stamp. Root only (the connector needs CAP_NET_ADMIN)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from tests.support import proc_connector

WAIT_SECS = 10.0
THREADED = "import threading; t = threading.Thread(target=int); t.start(); t.join()"


@pytest.fixture
def follower():
    why = proc_connector.unavailable()
    if why is not None:
        pytest.skip(why)
    events = proc_connector.Follower(os.getpid())
    try:
        yield events
    finally:
        events.close()


def test_a_child_fork_exec_and_exit_are_read_with_their_pids_and_times(follower) -> None:
    """Forked from a thread other than the main one, as `stoker run` forks its runs: the
    fork is this process's (its tgid), not the thread's."""
    before = time.monotonic_ns()
    started: list[subprocess.Popen] = []
    thread = threading.Thread(target=lambda: started.append(subprocess.Popen(["/bin/sh", "-c", "exit 3"])))
    thread.start()
    thread.join()
    (child,) = started
    child.wait(WAIT_SECS)
    after = time.monotonic_ns()
    fork = follower.wait_for("fork", before, WAIT_SECS, child.pid)
    execd = follower.wait_for("exec", before, WAIT_SECS, child.pid)
    exited = follower.wait_for("exit", before, WAIT_SECS, child.pid)
    assert (fork.pid, fork.tgid, fork.parent_tgid) == (child.pid, child.pid, os.getpid())
    assert (execd.pid, execd.tgid) == (child.pid, child.pid)
    assert os.waitstatus_to_exitcode(exited.status) == 3
    assert before < fork.ns <= execd.ns <= exited.ns < after


def test_a_childs_thread_is_not_taken_for_a_forked_process(follower) -> None:
    """The kernel names a new thread's parent as its process's parent: a thread of our child
    comes as a fork whose parent is this process; it is not a new process."""
    before = time.monotonic_ns()
    child = subprocess.Popen([sys.executable, "-c", THREADED])
    child.wait(WAIT_SECS)
    follower.wait_for("exit", before, WAIT_SECS, child.pid)
    assert [e.tgid for e in follower.events if e.kind == "fork" and e.ns > before] == [child.pid]


def test_a_datagram_of_other_messages_yields_no_events() -> None:
    header = proc_connector.NLMSGHDR.pack(proc_connector.NLMSGHDR.size, 3, 0, 0, 0)
    assert proc_connector.parse(header) == []
    assert proc_connector.parse(b"") == []
