"""An early start's run (`earlyfork.py`) that is dead before the supervisor has finished
starting: the reaper, started first, reaps it at once, and its exit must reach the
supervisor's drains all the same (a greedy run the OOM killer takes within milliseconds)."""
from __future__ import annotations

import os
import queue
import time
from pathlib import Path

import pytest

from config.spec import ProcessSpec
from executor.events import ProcessExited
from executor.procs import oomcount, spawn
from executor.procs.earlyfork import EarlyRun
from executor.procs.supervisor import Supervisor
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)
MARKER = "0123456789abcdef0123456789abcdef"


def zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_an_early_run_dead_before_the_drains_are_made_is_posted(tmp_path, tracker, monkeypatch):
    env = spawn.task_env({"PATH": os.environ["PATH"]}, tmp_path, MARKER)
    pid = os.posix_spawn("/bin/sh", ["/bin/sh", "-c", "exit 3"], env)
    tracker.add(pid)
    wait_for(lambda: zombie(pid), 5, message="the early run's exit")
    # what start() does between the reaper and the drains takes a while here
    monkeypatch.setattr(oomcount, "shield", lambda: time.sleep(0.2))
    events: queue.SimpleQueue = queue.SimpleQueue()
    sup = Supervisor(sandbox=tmp_path, task_label="test.0", env={"PATH": os.environ["PATH"]}, post=events.put,
                     marker=MARKER,
                     early_runs=[EarlyRun("p", 0, pid, "exit 3", env)])
    try:
        assert sup.spawn(ProcessSpec("p", "exit 3"), 0) == pid
        event = events.get(timeout=5)
        assert isinstance(event, ProcessExited) and event.status.exit_code == 3, event
    finally:
        sup.close()
