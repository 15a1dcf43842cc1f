"""tests/support/pidnames.py, and the support that judges pids with it (`proc_scan.live` of a
pid file's pids, `stoker_proc.live` of a checkpoint's): a pid handed on to another process
(pid_max is 32768 here, and one run of the suite wraps it) is not that process, not alive,
and not signalled; the process it named is, as long as it lives."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.support import pidnames, proc_scan
from tests.support.stoker_proc import kill_leftovers, task_pids
from tests.support.stoker_proc import live as checkpoint_live
from tests.support.waiting import wait_for


def _ended(proc: subprocess.Popen[bytes]) -> int:
    proc.kill()
    proc.wait()
    return proc.pid


@pytest.fixture
def handed_on() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The test's processes that took a pid (`pidnames.hand_on`), killed after it."""
    if os.geteuid() != 0:
        pytest.skip("handing a pid on (ns_last_pid) takes root")
    takers: list[subprocess.Popen[bytes]] = []
    yield takers
    for taker in takers:
        _ended(taker)


def _hand_on(pid: int, takers: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    # two clock ticks on: a process of the same tick has the same start (a pid the kernel
    # hands on has gone round the whole pid space first, which takes far longer)
    time.sleep(2 / os.sysconf("SC_CLK_TCK"))
    takers.append(pidnames.hand_on(pid, ["sleep", "60"]))
    return takers[-1]


@pytest.mark.serial  # hands a pid on: the host's next pid rewound
def test_a_pid_file_s_pid_handed_on_is_not_alive_and_not_killed(tmp_path, handed_on):
    """`proc_scan.live` of the pids a pid file names: the process that took the pid since
    started after the file was written (counted alive before: a false "left running")."""
    path = tmp_path / "run.pid"
    written = subprocess.Popen(["sleep", "60"])
    path.write_text(f"{written.pid}\n")
    pid = _ended(written)
    wait_for(lambda: time.time() > path.stat().st_mtime + 2 * pidnames.STARTED_BY_SLACK_SECS)
    stranger = _hand_on(pid, handed_on)
    assert proc_scan.is_live(stranger.pid)  # the pid alone: alive
    assert proc_scan.live(proc_scan.read_pid_files([path])) == set()
    proc_scan.kill_carrying("NO_SUCH_ENTRY=1", proc_scan.read_pid_files([path]), timeout_secs=1)
    assert stranger.poll() is None


def test_a_pid_file_s_pid_whose_process_lives_is_alive_and_killed(tmp_path):
    path = tmp_path / "run.pid"
    written = subprocess.Popen(["sleep", "60"])
    try:
        path.write_text(f"{written.pid}\n")
        assert proc_scan.live(proc_scan.read_pid_files([path])) == {written.pid}
        proc_scan.kill_carrying("NO_SUCH_ENTRY=1", proc_scan.read_pid_files([path]))
        assert written.wait(10) == -signal.SIGKILL
    finally:
        _ended(written)


@pytest.mark.serial  # hands a pid on: the host's next pid rewound
def test_a_named_process_whose_pid_was_handed_on_is_gone_and_the_taker_is_not_signalled(handed_on):
    first = subprocess.Popen(["sleep", "60"])
    name = pidnames.named(first.pid)
    assert pidnames.is_live(name)
    stranger = _hand_on(_ended(first), handed_on)
    assert not pidnames.is_live(name) and pidnames.is_live(stranger.pid)
    assert not pidnames.kill(name)
    assert stranger.poll() is None and stranger.pid == name


def test_a_named_process_is_alive_until_it_exits_and_is_signalled(tmp_path):
    proc = subprocess.Popen(["sleep", "60"])
    try:
        name = pidnames.named(proc.pid)
        assert pidnames.live([name]) == {proc.pid}
        assert pidnames.kill(name, signal.SIGTERM)
        assert proc.wait(10) == -signal.SIGTERM
        assert pidnames.live([name]) == set() and not pidnames.kill(name)
    finally:
        _ended(proc)


def test_a_pid_named_when_gone_is_never_alive(tmp_path):
    proc = subprocess.Popen(["true"])
    proc.wait()
    name = pidnames.named(proc.pid)
    assert name.start is None and not pidnames.is_live(name)


@pytest.mark.serial  # hands a pid on: the host's next pid rewound
def test_a_checkpoint_s_pid_handed_on_within_a_second_of_its_record_is_spared(tmp_path, handed_on):
    """`task_pids` named a pid by its record's wall time with a second of slack (psutil's
    start times, from /proc/stat's whole-second btime): a process that took the pid less
    than a second after the record counted as the run's, alive, and was SIGKILLed."""
    run = subprocess.Popen(["sleep", "60"])
    recorded = time.time()
    (tmp_path / ".stoker").mkdir()
    (tmp_path / ".stoker" / "checkpoint.jsonl").write_text(json.dumps(
        {"kind": "process", "process": "p", "run": 0, "from": "WAITING", "to": "RUNNING",
         "reason": "starting run 0", "pid": run.pid, "wall": recorded}) + "\n")
    pid = _ended(run)
    wait_for(lambda: time.time() > recorded + 2 * pidnames.STARTED_BY_SLACK_SECS)
    stranger = _hand_on(pid, handed_on)
    assert checkpoint_live(task_pids(tmp_path)) == set()
    kill_leftovers(task_pids(tmp_path))
    assert stranger.poll() is None


@pytest.mark.serial  # hands a pid on: the host's next pid rewound
def test_a_pid_another_process_holds_fails_the_hand_on_naming_it(handed_on):
    # Writing ns_last_pid sets the whole host's next pid: a process forked elsewhere between
    # the write and the test's fork takes the pid. One that lived on made every later try
    # miss, and the test that hands a pid on turned into a skip (under load, once in 25).
    holder = subprocess.Popen(["sleep", "1023"])
    try:
        with pytest.raises(pytest.fail.Exception, match=rf"pid {holder.pid} is another process's \(sleep 1023\)"):
            pidnames.hand_on(holder.pid, ["sleep", "60"], within_secs=0.3)
    finally:
        _ended(holder)


def test_a_hand_on_beside_other_workers_fails_before_it_rewinds_the_host_s_next_pid(monkeypatch):
    # After the rewind the next forks anywhere take the pids freed since `pid` was given out,
    # within milliseconds: a fault test beside it read two of its stopped runs' pids, taken so,
    # as alive (reproduced: both taken 52 ms after the pid file's write, inside its slack).
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    monkeypatch.setattr(pidnames.subprocess, "Popen", lambda *args, **kwargs: pytest.fail("forked"))
    monkeypatch.setattr(pidnames.Path, "write_text", lambda *args, **kwargs: pytest.fail("wrote"))
    with pytest.raises(pytest.fail.Exception, match=r"rewinds the host's next pid .* mark the test `serial`"):
        pidnames.hand_on(os.getpid(), ["sleep", "60"])
