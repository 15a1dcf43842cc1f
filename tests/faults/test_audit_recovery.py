"""Crashes and recovery: what a supervisor SIGKILLed at an awkward moment leaves, and what a
re-run in the same sandbox makes of it.

A `stoker restart` waiting on a supervisor that dies says so. A `stoker run` whose
watchdog could not clean up (stopped, then killed with it) leaves its task's processes
running with the attempt's marker, in its task cgroup. Re-run in the same sandbox, `stoker
run` kills them and removes that cgroup before its own attempt starts, with one warning line
naming them, and `stoker status` shows the dead attempt as LOST, not RUNNING;
`stoker status OLD_TASK_ID` still shows that attempt, not the re-run's.
"""
from __future__ import annotations

import os
import signal
import textwrap
import threading

import pytest

from executor.cli.main import main
from tests.support import cgroups, proc_scan
from tests.support.lostrun import kill_with_watchdog
from tests.support.shellwords import fake_sh, in_aurora
from tests.support.stoker_proc import StokerProcess, task_pids
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(30)]

# The process ignores SIGTERM and leaves a setsid'd daemon behind; both carry the marker.
CONFIG = f"""
    p = Process(name='p', cmdline="exec {in_aurora(fake_sh())} --ignore-sigterm --daemonize-child --daemon-pid-file d.pid")
    jobs = [Service(cluster='local', role='me', environment='test', name='crash',
                    task=Task(processes=[p], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB),
                              finalization_wait=1))]
"""


def _status(capsys, target) -> str:
    capsys.readouterr()
    assert main(["status", str(target)]) == 0
    return capsys.readouterr().out


def test_a_rerun_kills_what_a_supervisor_killed_with_its_watchdog_left(tmp_path, capsys):
    config = tmp_path / "crash.aurora"
    config.write_text(textwrap.dedent(CONFIG))
    sandbox = tmp_path / "sandbox"
    args = ["run", str(config), "--sandbox", str(sandbox), "--kill-grace", "1"]
    env = {"STOKER_EARLY_START": "off"}
    first = StokerProcess(args, tmp_path, env)
    marker = ""
    groups = cgroups.CgroupTracker()  # the first run's: neither it nor its watchdog removes it
    first_groups: list[str] = []
    try:
        top = wait_for(lambda: task_pids(sandbox), 10, message="the first run's process")
        first_groups = groups.add_of(first.pid)  # it is in it by its first run's start
        run = next(iter(top))
        marker = wait_for(lambda: proc_scan.task_marker_of(run), 10, message="the run's marker")
        entry = f"{proc_scan.TASK_MARKER}={marker}"
        # The daemon's pid file appears once the daemon is up and its middle process reaped.
        daemon = wait_for(lambda: proc_scan.read_pid_files([sandbox / "d.pid"]), 10,
                          message="its daemon's pid file")
        seen: list[set[int]] = []
        try:
            wait_for(lambda: seen.append(proc_scan.pids_carrying(entry)) or seen[-1] == top | daemon,
                     10, message=f"only the run {set(top)} and its daemon {daemon} carry {entry}")
        except AssertionError as e:
            raise AssertionError(f"{e}; the last carrying it: {seen[-1]}") from None
        # An operator's restart waits for the run, which ignores SIGTERM, when the supervisor
        # dies: it says so, and that the task is LOST.
        codes: list[int] = []
        restart = threading.Thread(target=lambda: codes.append(main(["restart", str(sandbox), "p"])))
        restart.start()
        said = []
        wait_for(lambda: said.append(capsys.readouterr()) or "restarting process 'p'" in said[-1].out,
                 10, message="the restart's first answer")
        # A watchdog that cannot act when its supervisor dies, stopped while its supervisor
        # is (a live supervisor continues a stopped watchdog at once).
        kill_with_watchdog(first.pid)
        first.wait(5)
        restart.join(10)
        assert codes == [1]
        assert capsys.readouterr().err == ("stoker: error: the supervisor went away before process "
                                           "'p' was restarted; the task is LOST\n")
        left = proc_scan.pids_carrying(entry)
        assert len(left) == 2  # what the crash left: the run and its daemon
        lost = _status(capsys, sandbox)
        assert "state=LOST" in lost
        old_id = lost.split("task_id: ", 1)[1].split()[0]

        (tmp_path / "second").mkdir()
        second = StokerProcess(args, tmp_path / "second", env)
        try:
            out = second.wait_output("task             STARTING → RUNNING")
            warning = next(line for line in out.splitlines() if "recorded no end" in line)
            assert warning.startswith("stoker run: warning: attempt 1 in this sandbox recorded "
                                      f"no end (its supervisor (pid {first.pid}) died); killed "
                                      "the 2 process(es) it left running: ")
            killed = warning.split("it left running: ", 1)[1].split(";")[0]
            assert set(map(int, killed.split())) == left, warning
            assert not proc_scan.live(left)
            for directory in first_groups:  # the re-run removed the lost attempt's cgroup
                assert f"removed its cgroup {directory}" in warning
                assert not os.path.exists(directory)
            status = _status(capsys, sandbox)
            assert "state=RUNNING  attempt=2" in status
            assert "earlier attempt 1: LOST (recorded RUNNING)" in status
            # The old task's id still names the old attempt, not the re-run's live one.
            old = _status(capsys, old_id).splitlines()
            assert "state=LOST" in old[0] and old[0].endswith("attempt=1"), old[0]
            assert f"task_id: {old_id}  supervisor_pid: {first.pid} (gone)" in "\n".join(old)
            second.signal(signal.SIGTERM)
            second.signal(signal.SIGTERM)  # the second: SIGKILL now (the run ignores SIGTERM)
            assert second.wait(10) == 143
        finally:
            second.close()
    finally:
        first.close()
        if marker:
            proc_scan.kill_carrying(f"{proc_scan.TASK_MARKER}={marker}")
        groups.cleanup()
