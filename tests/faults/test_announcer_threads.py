"""The ServerSet announcer when its threads cannot all start: a pids cgroup of its own
(removed after) with room for fewer threads than the announcer starts as the task joins
(kazoo's two workers, its connection's thread, the announcer's worker).

Whichever is refused, `join` raises the refusal (the owner fails the task with it: "the
task could not go on") and nothing the start made is left behind: before, a refused
worker left the close waiting its whole bound for a thread that never ran, a refused kazoo
worker left the other one waiting on its queue for good, and stopping a connection that
never started was an ERROR line (`announcer_close_failed`, AttributeError).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.limits import pids_cgroup
from tests.support.ports import free_ports
from tests.support.stoker_proc import REPO

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

THREADS = 4  # kazoo's two workers and its connection's thread, the announcer's worker

# In the cgroup, with room for ROOM threads more than it has: join, close, say what is left.
JOIN_WITHOUT_ROOM = r"""
import json, os, sys, threading, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])
cg, room, ensemble = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
(cg / "cgroup.procs").write_text(str(os.getpid()))
from config.announcer import AnnouncerSpec
from config.spec import JobSpec, TaskSpec
from config.zookeeper import AnnouncerSettings
from executor.task.announcer import ServerSetAnnouncer
from executor.task.serverset import plan_announcement
job = JobSpec(role="www-data", environment="prod", cluster="devcluster", name="hello", instance=3,
              task_id="task-1", task=TaskSpec(name="hello", processes=()), ports={"http": 31001})
plan = plan_announcement(job, AnnouncerSpec(), AnnouncerSettings(ensemble=ensemble), "agent-host")
announcer = ServerSetAnnouncer(plan, task="hello.3", post=lambda event: None)
(cg / "pids.max").write_text(str(len(os.listdir("/proc/self/task")) + room))
try:
    announcer.join()
    refused = None
except RuntimeError as exc:
    refused = str(exc)
(cg / "pids.max").write_text("max")
began = time.monotonic()
announcer.close(timeout_secs=30)
closed_secs = time.monotonic() - began
time.sleep(0.5)  # a thread told to stop has ended by now
left = sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())
print(json.dumps({"refused": refused, "closed_secs": closed_secs, "left": left}))
"""


@pytest.mark.parametrize("room", range(THREADS))
def test_a_join_with_no_room_for_a_thread_raises_and_leaves_nothing_started(room: int, tmp_path: Path) -> None:
    with pids_cgroup() as cg:
        done = subprocess.run([sys.executable, "-c", JOIN_WITHOUT_ROOM, str(cg), str(room),
                               f"127.0.0.1:{free_ports(1)[0]}", str(REPO)],
                              capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["refused"] is not None and "can't start new thread" in result["refused"], result
    assert result["closed_secs"] < 10.0, result  # not its bound (a guard against waiting it out)
    assert result["left"] == [], result
    assert "announcer_close_failed" not in done.stderr and "Traceback" not in done.stderr, done.stderr
