"""A shell health command that does not exit when SIGKILLed as its task stops, provoked for
real: it waits in D state (uninterruptible sleep) on a FUSE request its server holds
(`tests/support/fuse_held.py`), in the mount namespace of the `stoker run` under test.

The task's end is reported anyway (COMMAND_GONE_SECS after the stop began, one ERROR line
`health_command_survives`, docs/contract.md §6), and the run exits right after, the request
still held (was: CLOSE_KILL_SECS later, the close's kill waiting for the command again; before
that 2 s more, the health loop's thread waited for); once the server lets the request go, the
command exits and nothing of the task is left.
"""
from __future__ import annotations

import json
import os
import re
import signal
import textwrap
import time

import pytest

from executor.task.checks import COMMAND_GONE_SECS
from tests.support import proc_scan
from tests.support.executor_e2e import service
from tests.support.fuse_held import UNSHARED, needs_fuse_namespaces, serve_held_in
from tests.support.stoker_proc import StokerProcess
from tests.support.users import needs_root
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

HOLD_SECS = 20.0  # past the run's end: the test lets the request go once the run is over


@needs_root
@needs_fuse_namespaces
def test_a_health_command_stuck_in_d_state_as_its_task_stops_delays_its_end_by_command_gone_secs_only(
        tmp_path, figures):
    point, ready, sandbox = tmp_path / "mnt", tmp_path / "ready", tmp_path / "sb"
    point.mkdir()
    health = (f"health_check_config=HealthCheckConfig(initial_interval_secs=0.1, interval_secs=0.05, "
              f"timeout_secs=30, health_checker=HealthCheckerConfig(shell=ShellHealthChecker("
              f"shell_command='[ ! -e go ] || exec stat {point}')))")
    config = tmp_path / "job.aurora"
    config.write_text(textwrap.dedent(service("exec sleep 600", health)))
    args = ["run", str(config), "--sandbox", str(sandbox), "--root", str(tmp_path / "root"),
            "--log-format", "json", "--log-level", "INFO"]
    proc = StokerProcess(args, tmp_path, launcher=tuple(UNSHARED))
    server = None
    marker = ""
    try:
        proc.wait_output("STARTING → RUNNING", 30)
        marker = json.loads((sandbox / ".stoker/checkpoint.jsonl").read_text().splitlines()[0])["marker"]
        server = serve_held_in(proc.pid, point, HOLD_SECS, ready)
        (sandbox / "go").touch()  # the next check stats the mount: its request is held
        wait_for(ready.exists, 15, message="the health command's request to the mount, read and held")
        proc.signal(signal.SIGTERM)
        ended = proc.wait_output("KILLING → KILLED", 5)  # the task's end, reported
        ended_at = time.monotonic()
        assert proc.wait(10) == 143, proc.stdout() + proc.stderr()  # the request still held
        exit_after_end = time.monotonic() - ended_at
        server.kill()  # the request goes: the command, SIGKILLed, exits
        server.wait()
        server = None
    finally:
        proc.close()
        if server is not None:
            server.kill()
            server.wait()
        if marker:  # the watchdog the run let go kills the command once it can
            gone_by = time.monotonic() + 5
            while proc_scan.task_pids_by_marker(marker) and time.monotonic() < gone_by:
                time.sleep(0.05)
            left = proc_scan.task_pids_by_marker(marker)
            proc_scan.kill_carrying(f"{proc_scan.TASK_MARKER}={marker}")
    said = proc.events()
    names = [e["event"] for e in said]
    survives = said[names.index("health_command_survives")]
    assert survives["level"] == "ERROR" and survives["waited_secs"] == COMMAND_GONE_SECS, survives
    killing, killed = (next(e for e in said if e["event"] == "task_state" and e["to"] == state)
                       for state in ("KILLING", "KILLED"))
    assert names.index("health_command_survives") < said.index(killed), names  # said before the end is
    waited = killed["ts"] - killing["ts"]
    assert COMMAND_GONE_SECS <= waited < COMMAND_GONE_SECS + 0.5, waited
    line = next(line for line in ended.splitlines() if "KILLING → KILLED" in line)
    # the end names what is not yet gone (its command line cut to fit: a long pytest path)
    assert re.search(r"pid \d+ \(stat /\S*, state D\)", line), line
    assert "Traceback" not in proc.stderr(), proc.stderr()
    # once the request went, nothing of the task is left, nor its cgroup
    assert not left, proc_scan.describe(left)
    how = next(e["how"] for e in said if e["event"] == "containment")
    if how.startswith("cgroup"):
        group = how.split()[2]
        wait_for(lambda: not os.path.exists(group), 5, message=f"{group} removed by the watchdog")
    # the run's exit comes right after the end: the command was waited for once, COMMAND_GONE_SECS,
    # not again by the health loop's join (was: 2 s more) nor by the close's kill (CLOSE_KILL_SECS)
    assert "health_loop_stop_slow" not in names, names
    assert exit_after_end < 0.5, exit_after_end
    figures.add("stop to the reported end (s)", f"{waited:.3f}")
    figures.add("reported end to the run's exit, the command still held (s)", f"{exit_after_end:.3f}")
