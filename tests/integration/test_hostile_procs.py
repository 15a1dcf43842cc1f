"""The task's processes against their supervisor, or in states it may not expect: stopped
processes, a traced one, and a task of another user against its root supervisor (the setuid program a
supervisor may not signal is tests/faults/test_audit_hostile_procs.py's).
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from config.spec import ProcessSpec
from executor.events import ProcessExited
from executor.procs.identity import give_sandbox, user_named
from executor.procs.supervisor import Supervisor
from tests.support import pidnames
from tests.support.shellwords import python_sh
from tests.support.supervision import Harness, alive
from tests.support.users import needs_root, open_sandbox, throwaway_user
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


def stopped(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def watched(tmp_path: Path, tracker) -> Iterator[tuple[Harness, int]]:
    """A supervisor and its watchdog's pid; at the end the supervisor is closed and the
    watchdog must exit."""
    harness = Harness(tmp_path / "sandbox", tracker)
    found = harness.sup.watchdog_pid
    try:
        assert found is not None
        wd = pidnames.named(found)  # the supervisor reaps it: its pid may be handed on
        tracker.add(wd)
        yield harness, wd
    finally:
        harness.sup.close()
    wait_for(lambda: not alive(wd), 10, message="the watchdog to exit at close")


def test_a_stopped_run_and_its_stopped_daemon_act_on_sigterm_at_once(harness, tmp_path):
    """Before, a SIGTERM to a process that had stopped itself stayed pending: its handler
    never ran, the whole grace went by, and SIGKILL ended it (`killed by SIGKILL`)."""
    daemon = (f"setsid bash -c 'trap \"echo termed > {tmp_path}/daemon; exit 0\" TERM; "
              f"echo $$ > {tmp_path}/dpid; kill -STOP $$; while :; do sleep 0.02; done' &")
    top = harness.spawn("p", f"{daemon} trap 'exit 7' TERM; kill -STOP $$; "
                             "while :; do sleep 0.02; done")
    dpid_file = tmp_path / "dpid"
    wait_for(lambda: dpid_file.exists() and dpid_file.read_text().strip(), 5)
    dpid = pidnames.pid_in(dpid_file)
    harness.tracker.add(dpid)
    wait_for(lambda: stopped(top) and stopped(dpid), 5, message="both to stop themselves")
    assert harness.sup.signal_run("p", 0, signal.SIGTERM) == 2
    event = harness.next_exit(timeout_secs=5)  # never, before: the run stayed stopped
    assert (event.status.exit_code, event.status.signal) == (7, None)
    marker = Path(tmp_path / "daemon")
    wait_for(marker.exists, 5, message="the stopped daemon's SIGTERM handler to run")


def test_a_run_stopped_and_continued_again_and_again_stays_stopped_and_its_exit_is_heard_once(harness):
    """The reaper hears every stop of its children (`WSTOPPED`, for the watchdog's sake) and
    takes each report: a run the user stops stays stopped (`stoker status` reads the state),
    and after 50 stops and continues its exit still comes, once, with its code."""
    top = harness.spawn("p", "while [ ! -e go ]; do sleep 0.01; done; exit 5")
    for _ in range(50):
        os.kill(top, signal.SIGSTOP)
        wait_for(lambda: stopped(top), 10, message="it to stop")
        os.kill(top, signal.SIGCONT)
        wait_for(lambda: not stopped(top), 10, message="it to run again")
    os.kill(top, signal.SIGSTOP)
    (harness.sandbox / "go").touch()
    wait_for(lambda: stopped(top), 10, message="it to stop")
    with pytest.raises(queue.Empty):
        harness.events.get(timeout=0.2)
    assert stopped(top)  # not continued by anyone: a user's stop holds
    os.kill(top, signal.SIGCONT)
    event = harness.next_exit()
    assert (event.pid, event.status.exit_code) == (top, 5)
    with pytest.raises(queue.Empty):
        harness.events.get(timeout=0.1)


def test_a_watchdog_a_task_process_stopped_is_continued_at_once_and_leaves_at_close(tmp_path, tracker, caplog):
    """Before, a watchdog stopped by a task process of Stoker's own user (`kill -STOP`) stayed
    stopped until the close continued it: the supervisor's death meanwhile would have left
    the task running. Now the reaper hears it stop (`WSTOPPED`) and it is continued then."""
    with watched(tmp_path, tracker) as (harness, wd):
        with caplog.at_level(logging.WARNING, logger="executor.procs.watchdog"):
            harness.spawn("p", f"kill -STOP {wd}; exec sleep 30")
            wait_for(lambda: any("watchdog_continued task=" in r.getMessage() and f"pid={wd} " in r.getMessage()
                                 for r in caplog.records), 5, message="the stopped watchdog to be continued")
        assert "SIGSTOP" in caplog.text
        wait_for(lambda: psutil.Process(wd).status() != psutil.STATUS_STOPPED, 10, message="it to run again")
        assert harness.sup.watchdog_pid == wd  # the same one, not a new one


STOPPER = ("import os, signal, sys, time\n"
           "for _ in range(100):\n"
           "    os.kill(int(sys.argv[1]), signal.SIGSTOP)\n"
           "    time.sleep(0.002)\n"
           "open('done', 'w')\n")


def test_a_watchdog_stopped_again_and_again_is_continued_each_time_in_few_lines(tmp_path, tracker, caplog):
    """Before, each stop was one WARNING line: a task's process that stopped the watchdog in
    a loop wrote the supervisor's log full (a line per stop, without end). Now the first
    stop is named, then the 10th, 100th...: a line for each tenfold, with how many so far."""
    with watched(tmp_path, tracker) as (harness, wd):
        with caplog.at_level(logging.DEBUG, logger="executor.procs.watchdog"):
            harness.spawn("p", f"exec {python_sh('-c', STOPPER)} {wd}")
            wait_for(lambda: (harness.sandbox / "done").exists(), 10, message="the 100 stops")
            wait_for(lambda: psutil.Process(wd).status() != psutil.STATUS_STOPPED, 10, message="it to run again")
        lines = [r for r in caplog.records if "watchdog_continued" in r.getMessage()]
        assert 1 <= len(lines) <= 3 and all(r.levelno == logging.WARNING for r in lines), \
            [r.getMessage() for r in lines][:5]
        assert "times=1 " in lines[0].getMessage()


TRACER = ("import ctypes, sys, time; libc = ctypes.CDLL(None); "
          "assert libc.ptrace(16, int(sys.argv[1]), 0, 0) == 0; open('attached', 'w'); time.sleep(30)")


@needs_root
def test_a_run_a_debugger_holds_is_named_with_its_tracer_at_its_sigkill(harness, caplog):
    """Before, a run whose top process a debugger held (`gdb -p`) ended `did not exit 1 s
    after SIGKILL; given up on`, nothing saying why: the kernel tells the tracer of its end
    first, and the supervisor only once the tracer has taken it."""
    top = harness.spawn("q", "exec sleep 30")
    tracer = harness.spawn("tracer", f"exec {python_sh('-c', TRACER)} {top}")
    wait_for(lambda: (harness.sandbox / "attached").exists(), 5, message="the tracer to attach")
    with caplog.at_level(logging.WARNING, logger="executor.procs.containment"):
        harness.sup.signal_run("q", 0, signal.SIGKILL)
    traced = [r.getMessage() for r in caplog.records if "run_traced" in r.getMessage()]
    assert len(traced) == 1 and f"pid={top} " in traced[0] and f'tracer="{tracer} (' in traced[0], traced
    harness.sup.signal_run("tracer", 0, signal.SIGKILL)  # lets go of it: both ends are seen
    assert {harness.next_exit().process, harness.next_exit().process} == {"q", "tracer"}


@needs_root
def test_a_role_s_process_cannot_reach_its_root_supervisor_or_watchdog():
    """A task running as its role may not signal the root supervisor or its watchdog,
    nor open their descriptors (the watchdog's pipe: held open, it would never wake) or
    read their environments through /proc."""
    with throwaway_user() as (user, _group), open_sandbox() as sandbox:
        run_as = user_named(user.pw_name)
        give_sandbox(sandbox, run_as)
        events: queue.SimpleQueue = queue.SimpleQueue()
        sup = Supervisor(sandbox=sandbox, task_label="t.0", env={"PATH": os.environ["PATH"]},
                         post=events.put, run_as=run_as)
        try:
            sup.start()
            wd = sup.watchdog_pid
            # kill -0: the permission check alone (a failing test must not stop pytest itself)
            probes = [f"kill -0 {os.getpid()}", f"kill -0 {wd}",
                      f": > /proc/{wd}/fd/0", f"ls /proc/{os.getpid()}/fd", f"cat /proc/{os.getpid()}/environ",
                      f"cat /proc/{wd}/environ"]
            script = "; ".join(f"{probe} >/dev/null 2>&1; echo $?" for probe in probes)
            sup.spawn(ProcessSpec("probe", script), 0)
            exited = events.get(timeout=10)
            assert isinstance(exited, ProcessExited) and exited.status.exit_code == 0
            codes = (sandbox / ".logs/probe/0/stdout").read_text().split()
            assert len(codes) == len(probes) and "0" not in codes, dict(zip(probes, codes))
        finally:
            sup.close()
