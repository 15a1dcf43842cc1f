"""The daemons a task's runs left (`executor/procs/daemons.KeptDaemons`), each rule read on
its own with real processes: one kept by pid and start (not a reused pid), its run's marker
kept only when one of them carries it, a process added once, a refusal kept by pid and start
and forgotten once the pid is another process's, the gone ones forgotten, and a daemon this
user may not signal (a setuid program's) refused, named and waited for no more: signalled
from a child that runs as nobody, as a supervisor of another user would."""
from __future__ import annotations

import json
import logging
import os
import signal

import pytest

from executor.procs.daemons import KeptDaemons
from executor.procs.proctree import ProcInfo
from tests.support.waiting import exit_code

MARK = b"STOKER_RUN_MARKER=web.0.3"


def info(pid: int, start: int, environ: bytes = b"", ppid: int = 1) -> ProcInfo:
    return ProcInfo(pid=pid, ppid=ppid, pgrp=pid, environ=environ, start=start)


def start_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rpartition(b")")[2].split()[19])


def test_a_process_is_added_once_for_its_pid_and_start():
    kept = KeptDaemons()
    assert kept.add(info(10, 100)) is True
    assert kept.add(info(10, 100)) is False
    assert kept.add(info(10, 101)) is True  # the pid is another process's now
    assert kept.held() == {10: 101} and kept.pids() == [10]


def test_a_run_s_marker_is_kept_only_when_one_of_its_processes_carries_it():
    kept = KeptDaemons()
    kept.keep([info(10, 100, b"PATH=/bin\0")], MARK)
    assert not kept.holds(info(20, 200, MARK + b"\0"))  # its marker is not kept
    kept.keep([info(11, 110, b"A=1\0" + MARK + b"\0")], MARK)
    assert kept.holds(info(20, 200, MARK + b"\0")) and kept.held() == {10: 100, 11: 110, 20: 200}


def test_forgotten_daemons_leave_no_marker_and_may_be_kept_again():
    kept = KeptDaemons()
    kept.keep([info(10, 100, MARK + b"\0")], MARK)
    kept.forget()
    assert not kept and not kept.holds(info(20, 200, MARK + b"\0"))
    kept.keep([info(11, 110, MARK + b"\0")], MARK)
    assert kept and kept.holds(info(21, 210, MARK + b"\0"))


def test_a_kept_pid_is_held_by_its_start_and_a_refused_one_until_its_pid_is_another_s():
    kept = KeptDaemons()
    kept.keep([info(10, 100)], MARK)
    assert kept.holds(info(10, 100)) and not kept.holds(info(10, 999))
    kept.refuse([10, 42])  # 42: never kept, nothing to refuse
    assert kept.pids() == [] and kept.held() == {10: 100}
    assert kept.holds(info(10, 100)) and kept.waited_for([10, 11]) == [11]
    assert not kept.holds(info(10, 555))  # its pid is another process's: the refusal forgotten
    assert kept.held() == {} and kept.waited_for([10]) == [10]


def test_the_gone_are_forgotten_and_the_live_kept(sleeper):
    kept = KeptDaemons()
    kept.keep([info(sleeper.pid, start_of(sleeper.pid)), info(sleeper.pid + 100_000_000, 1)], MARK)
    assert kept.alive() and kept.pids() == [sleeper.pid]
    sleeper.kill()
    sleeper.wait(10)
    assert not kept.alive() and kept.pids() == []


def test_one_found_by_its_run_s_marker_keeps_the_daemons_alive_and_none_forgets_them(sleeper):
    kept = KeptDaemons()
    kept.keep([info(sleeper.pid + 100_000_000, 1, MARK + b"\0")], MARK)
    assert kept.found_alive(lambda: [sleeper.pid]) and kept.holds(info(7, 70, MARK + b"\0"))
    assert not kept.found_alive(lambda: [])
    assert not kept and not kept.holds(info(8, 80, MARK + b"\0"))


def signal_as_nobody(pid: int, start: int, out_fd: int) -> None:
    """In a forked child: become nobody, SIGTERM the kept daemon `pid` as the task's daemons
    are signalled, and write what `KeptDaemons` then holds and said to `out_fd` (JSON)."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("executor").addHandler(handler)
    logging.getLogger("executor").setLevel(logging.INFO)
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    kept = KeptDaemons()
    kept.keep([ProcInfo(pid=pid, ppid=1, pgrp=pid, environ=b"", start=start)], b"M=1")
    sent = kept.signal([pid], signal.SIGTERM, lambda info, ours: True, "web.0")
    os.write(out_fd, json.dumps({"sent": sent, "pids": kept.pids(), "held": kept.held(),
                                 "waited": kept.waited_for([pid]), "lines": lines}).encode())


def test_a_daemon_this_user_may_not_signal_is_refused_named_and_waited_for_no_more(sleeper):
    if os.geteuid() != 0:
        pytest.skip("needs root: the signalling child becomes nobody")
    assert KeptDaemons().signal([], signal.SIGTERM, lambda info, ours: True, "web.0") == 0  # none to signal
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # (forked, not run anew: the module under test is this process's)
        try:
            os.close(read_fd)
            signal_as_nobody(sleeper.pid, start_of(sleeper.pid), write_fd)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as out:
        said = out.read()
    assert exit_code(child, 10) == 0
    got = json.loads(said)
    assert (got["sent"], got["pids"], got["waited"]) == (0, [], [])
    assert got["held"] == {str(sleeper.pid): start_of(sleeper.pid)}  # still killed by the watchdog
    assert len(got["lines"]) == 1 and got["lines"][0].startswith("daemons_unsignalled task=web.0 signal=SIGTERM "), got
    assert "1 of the daemons the task's runs left may not be signalled by this user (uid 65534" in got["lines"][0]
    assert f"pid {sleeper.pid} (sleep 600, uid 0)" in got["lines"][0] and sleeper.poll() is None  # not signalled


LIVE = b"STOKER_RUN_MARKER=web.0.4"
OWN = b"STOKER_TASK_MARKER=t-1"


def test_a_walk_is_sorted_into_claimed_kept_and_newly_kept_hidden_ones_parents_first():
    kept = KeptDaemons()
    kept.add(info(2000, 20))  # a daemon kept by pid
    kept.add(info(3001, 31))  # a hidden one kept already
    walk = [info(1000, 10, LIVE + b"\0"), info(1001, 11, ppid=1000),  # a live run's, and its child: claimed
            info(2000, 20), info(2001, 21, ppid=2000),  # a kept daemon, and its child: kept from now on
            ProcInfo(pid=3000, ppid=1, pgrp=3000, environ=b"", start=30, hidden=True),  # newly kept
            ProcInfo(pid=3001, ppid=1, pgrp=3001, environ=b"", start=31, hidden=True),
            info(4000, 40, b"PATH=/bin\0")]  # nobody's: out
    out, daemons, hidden = kept.sort(walk, frozenset(), (LIVE,), OWN)
    assert (out, daemons, hidden) == ([4000], [2000, 2001, 3000, 3001], [3000])
    assert kept.held() == {2000: 20, 2001: 21, 3000: 30, 3001: 31}


def test_kept_daemons_are_something_while_a_pid_or_a_marker_is_kept():
    kept = KeptDaemons()
    assert not kept
    kept.add(info(10, 100))
    assert kept
    marked = KeptDaemons()
    marked.keep([info(11, 110, MARK + b"\0")], MARK)
    marked.refuse([11])  # no pid waited for: its marker still is
    assert marked.pids() == [] and marked


def test_the_handover_forgets_the_orphans_that_are_gone(sleeper):
    from executor.procs.handover import Handover

    handover = Handover(KeptDaemons())
    given: list[dict[int, int]] = []
    handover.to(given.append)
    handover.saw({sleeper.pid: start_of(sleeper.pid), sleeper.pid + 100_000_000: 1})
    handover.prune()
    assert handover.orphans() == {sleeper.pid: start_of(sleeper.pid)}
    sleeper.kill()
    sleeper.wait(10)
    handover.prune()
    assert handover.orphans() == {} and given[-1] == {}
