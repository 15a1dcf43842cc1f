"""An early start's run (`earlyfork.py`) that is dead before the supervisor has finished
starting: the reaper, started first, reaps it at once, and its exit must reach the
supervisor's drains all the same (a greedy run the OOM killer takes within milliseconds)."""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.spec import ProcessSpec
from executor.events import ProcessExited
from executor.procs import oomcount, runenv, spawn
from executor.procs.earlyfork import EarlyRun
from executor.procs.supervisor import Supervisor
from tests.support import pidnames
from tests.support.stoker_proc import REPO
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



def test_an_early_run_reaped_before_it_is_given_up_takes_its_group_with_it(tmp_path, tracker):
    # (what the give-up of a reaped run still kills: its group's members, here the `sleep`
    # it left in its group, kept since its top exited 0)
    env = spawn.task_env({"PATH": os.environ["PATH"]}, tmp_path, MARKER)
    left, go = tmp_path / "left", tmp_path / "go"
    cmdline = f"sleep 60 & echo $! > {left}; while [ ! -e {go} ]; do sleep 0.01; done; exit 0"
    pid = os.posix_spawn("/bin/sh", ["/bin/sh", "-c", cmdline], runenv.run_env(env, MARKER, "p", 0), setpgroup=0)
    tracker.add(pid)
    sup = Supervisor(sandbox=tmp_path, task_label="test.0", env={"PATH": os.environ["PATH"]},
                     post=lambda event: None, marker=MARKER, early_runs=[EarlyRun("p", 0, pid, cmdline, env)])
    try:
        sup.start()
        sleeper = wait_for(lambda: pidnames.pid_file(left), 5, message="the run's sleep").pop()
        tracker.add(sleeper)
        go.touch()
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 5, message="the early run reaped")
        assert pidnames.is_live(sleeper) and os.getpgid(sleeper) == pid
        sup.idle()  # never asked for: given up
        wait_for(lambda: not pidnames.is_live(sleeper), 5, message="the given-up run's group killed")
    finally:
        sup.close()


GIVEN_UP_AFTER_ITS_REAP = f"""
import os, sys, time
from pathlib import Path
from executor.procs import runenv, spawn
from executor.procs.earlyfork import EarlyRun
from executor.procs.supervisor import Supervisor
sandbox = Path(sys.argv[1])
env = spawn.task_env({{"PATH": os.environ["PATH"]}}, sandbox, {MARKER!r})
pid = os.posix_spawn("/bin/sh", ["/bin/sh", "-c", "exit 0"], runenv.run_env(env, {MARKER!r}, "p", 0), setpgroup=0)
sup = Supervisor(sandbox=sandbox, task_label="test.0", env={{"PATH": os.environ["PATH"]}},
                 post=lambda event: None, marker={MARKER!r}, early_runs=[EarlyRun("p", 0, pid, "exit 0", env)])
sup.start()
while os.path.exists(f"/proc/{{pid}}"):  # exited, and reaped by the supervisor's reaper
    time.sleep(0.001)
print(pid, flush=True)
sys.stdin.readline()  # its pid is another process's now, the leader of a group of that id
sup.idle()  # the early run the task never asked for: given up
sup.close()
print("closed", flush=True)
"""


@pytest.mark.serial  # hands a pid on: the host's next pid rewound
def test_an_early_run_reaped_before_it_is_given_up_kills_no_group_that_took_its_id(tmp_path):
    """An early start's run that exited (reaped at once by the supervisor's reaper, its exit
    held back) is given up later, when the task does not take it: `os.killpg` of its pid,
    by then free. The kernel may hand that pid on meanwhile; a process that took it and
    leads a group of its own (any `setsid`) was SIGKILLed with its group."""
    if os.geteuid() != 0:
        pytest.skip("handing a pid on (ns_last_pid) takes root")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    script = subprocess.Popen([sys.executable, "-c", GIVEN_UP_AFTER_ITS_REAP, str(sandbox)], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    stranger = None
    try:
        assert script.stdin is not None and script.stdout is not None
        pid = int(script.stdout.readline())
        stranger = pidnames.hand_on(pid, ["sleep", "60"], new_session=True)
        script.stdin.write("go\n")
        script.stdin.flush()
        assert script.stdout.readline() == "closed\n"
        assert script.wait(10) == 0
        assert stranger.poll() is None, "the early run's give-up SIGKILLed the group that took its pid"
    finally:
        if stranger is not None:
            stranger.kill()
            stranger.wait()
        script.kill()
        script.wait()
