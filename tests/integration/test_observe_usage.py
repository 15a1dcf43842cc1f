"""The observer's CPU and memory of a running run, read through `Reader.task` from a
hand-made checkpoint whose supervisor is this test process: shown whatever the wall clock
did since the run's start was recorded (an NTP step, a VM resumed after days), and never
for a pid that is not a child of that supervisor (a reused or planted pid)."""
from __future__ import annotations

import signal
import subprocess
import time

import pytest

from config.registry import RegistrySettings
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import ProcessIdentity, identity_of, is_stopped, own_identity
from executor.host.registry import Registry
from executor.observe.pages import task_page
from executor.observe.reader import Reader
from executor.task.checkpoint import CheckpointWriter
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)

DAYS = 3 * 86400.0


def running_task(tmp_path, pid: int, wall: float, supervisor: ProcessIdentity | None = None) -> Reader:
    """A registered task whose supervisor is this process (or `supervisor`) and whose
    process `web` runs as `pid`, its records written at wall time `wall`."""
    me = supervisor or own_identity()
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    writer = CheckpointWriter(sandbox)
    writer.append_many([
        {"kind": "header", "task": "web.0", "job_key": "c/r/e/web", "task_id": "web-0-1",
         "sandbox": str(sandbox), "ports": {}, "supervisor_pid": me.pid,
         "supervisor_start": me.start_ticks, "supervisor_boot": me.boot_id, "marker": "m4rk3r",
         "processes": ["web"], "health": "none", "wall": wall},
        {"kind": "task", "from": "NEW", "to": "STARTING", "reason": "launched", "wall": wall},
        {"kind": "process", "process": "web", "run": 0, "from": "WAITING", "to": "RUNNING",
         "reason": "starting run 0", "pid": pid, "wall": wall},
        {"kind": "task", "from": "STARTING", "to": "RUNNING", "reason": "processes started",
         "wall": wall}])
    writer.close()
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60)
    Registry(settings).write(RegistryEntry(
        sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks,
        supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=wall, task_id="web-0-1"))
    return Reader(settings)


@pytest.fixture
def child():
    proc = subprocess.Popen(["sleep", "30"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_runs_usage_is_shown_after_the_wall_clock_stepped_since_its_start(tmp_path, child):
    # The run's start was recorded three days "ago" by the wall clock, as when the clock was
    # stepped forward since (a VM resumed): the kernel still says it started just now.
    reader = running_task(tmp_path, child.pid, time.time() - DAYS)
    usage = reader.task("web-0-1").usage
    assert set(usage) == {"web"}
    assert usage["web"].pid == child.pid and usage["web"].rss_bytes > 0
    assert abs(usage["web"].started_wall - time.time()) < 60  # the kernel's start, not the record's


def test_a_pid_that_is_not_the_supervisors_child_is_never_shown_as_the_run(tmp_path):
    # pid 1 runs, started at boot, and is nobody's run: a planted or reused pid
    reader = running_task(tmp_path, 1, time.time())
    assert reader.task("web-0-1").usage == {}


def test_a_stopped_run_is_said_to_be_stopped(tmp_path, child):
    """Before, a run that had stopped itself (`kill -STOP $$`) showed as RUNNING at 0 % CPU,
    like one that sleeps."""
    reader = running_task(tmp_path, child.pid, time.time())
    assert reader.task("web-0-1").usage["web"].stopped is False
    child.send_signal(signal.SIGSTOP)
    wait_for(lambda: is_stopped(child.pid), 5)
    detail = reader.task("web-0-1")
    assert detail.usage["web"].stopped is True
    assert detail.status["stopped_processes"] == ["web"]  # /api/tasks/ID's `status`, as status --json
    assert '<span class="state s-RUNNING">RUNNING</span> (stopped)' in task_page(detail, time.time())


def test_a_stopped_supervisor_is_said_to_be_stopped_as_stoker_status_says(tmp_path, child):
    """Before, the task page of a supervisor a task's `kill -STOP $PPID` (or a debugger) had
    stopped said `(running, stoker run)`, where `stoker status` said it was stopped and that
    nothing was supervised."""
    supervisor = identity_of(child.pid)  # stands in for the supervisor: stopped, not this process
    assert supervisor is not None
    reader = running_task(tmp_path, child.pid, time.time(), supervisor)
    assert f"{child.pid} (running, stoker run)" in task_page(reader.task("web-0-1"), time.time())
    child.send_signal(signal.SIGSTOP)
    wait_for(lambda: is_stopped(child.pid), 5)
    detail = reader.task("web-0-1")
    assert detail.status["supervisor_stopped"] is True
    page = task_page(detail, time.time())
    assert (f"{child.pid} (stopped: SIGSTOP or a debugger; nothing is supervised until it is "
            f"continued, kill -CONT {child.pid}, stoker run)") in page
