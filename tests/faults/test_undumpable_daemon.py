"""Daemons that made themselves not dumpable (`prctl(PR_SET_DUMPABLE, 0)`, as ssh-agent
does) under a `stoker run` of an ordinary user without a cgroup (STOKER_CGROUPS=off): their
`/proc/PID/environ`, and with it the task's marker, is root's to read.

- One, re-parented to Stoker while its run lives on, was SIGKILLed at the next exit of any
  run or health command (an orphan with no marker Stoker could read: "unclaimed"), and one
  whose launcher run exited 0 was killed at once instead of kept as the run's daemon. Both
  are now kept as the task's daemons (`executor/procs/containment.py`: a process whose
  environment may not be read cannot be told from any run's).
- A kill -9 of Stoker left such a daemon running: the watchdog's marker scan cannot see
  it, and nothing else tied it to the task once Stoker was gone (`stoker status` listed no
  leftover). Now Stoker, its subreaper, hands each orphan's pid and start time to the
  watchdog (`executor/procs/handover.py`: looked for 0.05 s after the run starts), which
  kills it too.

Needs root (to run Stoker as nobody) and a Python nobody may run.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from executor.task.heldfile import read_held
from tests.support import proc_scan
from tests.support.shellwords import FAKE_TASK, sh
from tests.support.users import needs_root, open_sandbox, reachable, stoker_as
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, needs_root, pytest.mark.timeout(60)]

NOBODY = 65534
GONE_WITHIN_SECS = 1.0


def job(python: str, fake_task: str) -> str:
    agent = f"{sh(python, fake_task)} --daemonize-child --daemon-undumpable --daemon-pid-file daemon.pid"
    # exits 0 once its daemon runs, after the agent's is up: the exit that killed them both
    launch = (f"while [ ! -e daemon.pid ]; do sleep 0.01; done; exec {sh(python, fake_task)} "
              f"--daemonize-child --daemon-undumpable --daemon-pid-file launched.pid --exit-after 0")
    return textwrap.dedent(f"""
        jobs = [Service(cluster='local', role='nobody', environment='test', name='agent',
            task=Task(processes=[Process(name='agent', cmdline={agent!r}),
                                 Process(name='launch', cmdline={launch!r})],
                      resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)


def test_undumpable_daemons_outlive_a_run_s_exit_and_die_with_a_kill_9_of_stoker(figures):
    stoker = stoker_as(NOBODY, NOBODY)
    if stoker is None:
        pytest.skip("no Python an unprivileged user may run this checkout with")
    python = stoker[stoker.index("-m") - 1]
    with open_sandbox() as top:
        os.chmod(top, 0o755)
        (top / "job.aurora").write_text(job(python, reachable(FAKE_TASK, stoker)))
        sandbox, root = top / "sandbox", top / "registry"
        for directory in (sandbox, root):
            directory.mkdir(mode=0o700)
            os.chown(directory, NOBODY, NOBODY)
        out, err = top / "stoker.stdout", top / "stoker.stderr"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            run = subprocess.Popen([*stoker, "run", str(top / "job.aurora"), "--sandbox", str(sandbox),
                                    "--cgroups", "off", "--root", str(root), "--log-level", "DEBUG"],
                                   cwd=top, stdin=subprocess.DEVNULL, stdout=stdout,
                                   stderr=stderr, start_new_session=True)
        daemons: set[int] = set()
        try:
            files = [sandbox / "daemon.pid", sandbox / "launched.pid"]
            wait_for(lambda: all(f.exists() for f in files), 15, message="the daemons' pid files")
            daemons = proc_scan.read_pid_files(files)
            for pid in daemons:
                assert os.stat(f"/proc/{pid}/environ").st_uid == 0, f"{pid} is not dumpable"
                assert os.stat(f"/proc/{pid}").st_uid == NOBODY
            wait_for(lambda: any(line.split()[2:5] == ["launch[0]", "RUNNING", "→"] and "SUCCESS" in line
                                 for line in out.read_text().splitlines()), 5, message="the launcher's exit 0")
            # the leftovers of an exit are killed before it is posted: no wait needed
            assert proc_scan.live(daemons) == daemons, "a daemon did not outlive the launcher's exit"
            wait_for(lambda: all(_held(err, pid) for pid in daemons), 5,
                     message=f"the watchdog holding {daemons}")
            # kept beside the checkpoint, for `stoker status` and a re-run should the watchdog die too
            wait_for(lambda: {pid for pid, _ in read_held(sandbox, _marker(sandbox))} == daemons, 5,
                     message=f"{daemons} in .stoker/held.json")
            run.send_signal(signal.SIGKILL)
            run.wait(5)
            killed_at = time.monotonic()
            wait_for(lambda: not proc_scan.live(daemons), GONE_WITHIN_SECS,
                     message=f"the undumpable daemons {daemons} gone after their Stoker's kill -9")
            figures.add("undumpable daemons gone after kill -9 (s)", f"{time.monotonic() - killed_at:.3f}")
        finally:
            if run.poll() is None:
                run.kill()
                run.wait(5)
            proc_scan.kill_carrying(b"STOKER_TESTS_NOTHING=1", daemons)
            shutil.rmtree(root, ignore_errors=True)


def _marker(sandbox: Path) -> str:
    header = json.loads((sandbox / ".stoker/checkpoint.jsonl").read_text().splitlines()[0])
    return header["marker"]


def _held(err: Path, pid: int) -> bool:
    """Stoker's last DEBUG line `watchdog_holds ... pids="PID ..."` names the daemon."""
    lines = [line for line in err.read_text(errors="replace").splitlines() if "watchdog_holds" in line]
    held = lines[-1].partition("pids=")[2].strip('"').split('"')[0].split() if lines else []
    return str(pid) in held
