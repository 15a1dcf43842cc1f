"""A `stoker run` of an ordinary user without a cgroup (STOKER_CGROUPS=off), killed with -9,
leaves no daemon of its task behind, not even one that made itself not dumpable.

The run's daemon double-forks, calls `prctl(PR_SET_DUMPABLE, 0)` as ssh-agent does, and is
re-parented to Stoker while its run lives on: its `/proc/PID/environ`, and with it the task's
marker, is then root's to read, so the watchdog's marker scan cannot see it, and nothing
else tied it to the task once Stoker was gone (it ran on; `stoker status` listed no
leftover). Now Stoker, its subreaper, hands the orphan's pid and start time to the
watchdog (`executor/procs/handover.py`: looked for 0.05 s after the run starts), which kills
it too. Needs root (to run Stoker as nobody) and a Python nobody may run.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.support import proc_scan
from tests.support.users import needs_root, open_sandbox, stoker_as
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, needs_root, pytest.mark.timeout(60)]

FAKE = Path(__file__).resolve().parents[1] / "support/fake_task.py"
NOBODY = 65534
GONE_WITHIN_SECS = 1.0


def job(python: str) -> str:
    agent = f"{python} {FAKE} --daemonize-child --daemon-undumpable --daemon-pid-file daemon.pid"
    return textwrap.dedent(f"""
        jobs = [Service(cluster='local', role='nobody', environment='test', name='agent',
            task=Task(processes=[Process(name='agent', cmdline={agent!r})],
                      resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)


def test_kill_9_of_an_unprivileged_stoker_run_takes_its_undumpable_daemon(figures):
    stoker = stoker_as(NOBODY, NOBODY)
    if stoker is None:
        pytest.skip("no Python an unprivileged user may run this checkout with")
    python = stoker[stoker.index("-m") - 1]
    with open_sandbox() as top:
        os.chmod(top, 0o755)
        (top / "job.aurora").write_text(job(python))
        sandbox, root = top / "sandbox", top / "registry"
        for directory in (sandbox, root):
            directory.mkdir(mode=0o700)
            os.chown(directory, NOBODY, NOBODY)
        err = top / "stoker.stderr"
        with open(err, "wb") as stderr:
            run = subprocess.Popen([*stoker, "run", str(top / "job.aurora"), "--sandbox", str(sandbox),
                                    "--cgroups", "off", "--root", str(root), "--log-level", "DEBUG"],
                                   cwd=top, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=stderr, start_new_session=True)
        daemon: set[int] = set()
        try:
            wait_for(lambda: (sandbox / "daemon.pid").exists(), 15, message="the daemon's pid file")
            daemon = proc_scan.read_pid_files([sandbox / "daemon.pid"])
            (pid,) = daemon
            assert os.stat(f"/proc/{pid}/environ").st_uid == 0, "the daemon is not dumpable"
            assert os.stat(f"/proc/{pid}").st_uid == NOBODY
            wait_for(lambda: _held(err, pid), 5, message=f"the watchdog holding {pid}")
            run.send_signal(signal.SIGKILL)
            run.wait(5)
            killed_at = time.monotonic()
            wait_for(lambda: not proc_scan.live(daemon), GONE_WITHIN_SECS,
                     message=f"the undumpable daemon {pid} gone after its Stoker's kill -9")
            figures.add("undumpable daemon gone after kill -9 (s)", f"{time.monotonic() - killed_at:.3f}")
        finally:
            if run.poll() is None:
                run.kill()
                run.wait(5)
            proc_scan.kill_carrying(b"STOKER_TESTS_NOTHING=1", daemon)
            shutil.rmtree(root, ignore_errors=True)


def _held(err: Path, pid: int) -> bool:
    """Stoker's DEBUG line `watchdog_holds ... pids=PID ...` names the daemon."""
    for line in err.read_text(errors="replace").splitlines():
        words = line.split()
        if "watchdog_holds" in line and f"pids={pid}" in words:
            return True
    return False
