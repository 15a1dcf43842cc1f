"""The task's processes against their supervisor, or in states it may not expect: stopped
processes, setuid programs it may not signal, zombies nobody reaps (the audit's cases that
need only a Supervisor; the ones through `stoker run` are in tests/e2e/test_hostile_runs.py).
"""
from __future__ import annotations

import signal
from pathlib import Path

import psutil
import pytest

from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


def stopped(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


def test_a_stopped_run_and_its_stopped_daemon_act_on_sigterm_at_once(harness, tmp_path):
    """Before, a SIGTERM to a process that had stopped itself stayed pending: its handler
    never ran, the whole grace went by, and SIGKILL ended it (`killed by SIGKILL`)."""
    daemon = (f"setsid bash -c 'trap \"echo termed > {tmp_path}/daemon; exit 0\" TERM; "
              f"echo $$ > {tmp_path}/dpid; kill -STOP $$; while :; do sleep 0.02; done' &")
    top = harness.spawn("p", f"{daemon} trap 'exit 7' TERM; kill -STOP $$; "
                             "while :; do sleep 0.02; done")
    dpid_file = tmp_path / "dpid"
    wait_for(lambda: dpid_file.exists() and dpid_file.read_text().strip(), 5)
    dpid = int(dpid_file.read_text())
    harness.tracker.add(dpid)
    wait_for(lambda: stopped(top) and stopped(dpid), 5, message="both to stop themselves")
    assert harness.sup.signal_run("p", 0, signal.SIGTERM) == 2
    event = harness.next_exit(timeout_secs=5)  # never, before: the run stayed stopped
    assert (event.status.exit_code, event.status.signal) == (7, None)
    marker = Path(tmp_path / "daemon")
    wait_for(marker.exists, 5, message="the stopped daemon's SIGTERM handler to run")
