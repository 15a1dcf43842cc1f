"""A process that daemonizes and exits 0 (a launcher: `nginx`, `apachectl start`, Aurora's own
end-to-end job `test_daemonizing_process`), end to end: its daemon outlives it, as under
Thermos, and the task's stop SIGTERMs the daemon and waits for it, so that the daemon's
SIGTERM handler has run before the task ends (KILLED under `stoker run`, TASK_KILLED under
the executor). Before, the daemon was SIGKILLed the moment its launcher exited."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from config.document import encode
from config.loader import load_job
from tests.support import pidnames
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.shellwords import in_aurora, python_sh
from tests.support.stoker_proc import StokerProcess, checkpoint_records, kill_leftovers, live, task_pids
from tests.support.waiting import wait_for

# fork, setsid, fork again; the daemon writes its pid, and on SIGTERM removes `handled` and
# exits. The middle child waits before its fork: when its launcher exits, the daemon does not
# exist yet, and Stoker finds it later by the run's marker it inherits.
DAEMONIZER = """
import os, signal, sys, time
if os.fork():
    sys.exit(0)
os.setsid()
time.sleep(0.05)
if os.fork():
    os._exit(0)
def handler(signum, frame):
    os.remove("handled")
    os._exit(0)
signal.signal(signal.SIGTERM, handler)
open("daemon.pid.tmp", "w").write(str(os.getpid()))
os.rename("daemon.pid.tmp", "daemon.pid")
while True:
    time.sleep(1)
"""


def job(tmp_path: Path) -> Path:
    (tmp_path / "daemonizer.py").write_text(DAEMONIZER)
    config = tmp_path / "daemonize.aurora"
    config.write_text(textwrap.dedent(f"""
        jobs = [Service(cluster='local', role='me', environment='test', name='daemonize',
            task=Task(processes=[
                Process(name='serve', cmdline='exec sleep 1000'),
                Process(name='launch', cmdline='touch handled && {in_aurora(python_sh(tmp_path / 'daemonizer.py'))}')],
              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB), finalization_wait=5))]
    """))
    return config


def daemon_of(sandbox: Path) -> int:
    pid_file = sandbox / "daemon.pid"
    wait_for(pid_file.exists, 10, message="the daemon's pid file")
    return pidnames.pid_in(pid_file)


def test_stoker_run_keeps_a_launchers_daemon_and_stops_it_with_the_task(tmp_path):
    sandbox = tmp_path / "sandbox"
    run = StokerProcess(["run", str(job(tmp_path)), "--sandbox", str(sandbox)], tmp_path)
    try:
        run.wait_output("launch[0]        RUNNING → SUCCESS")
        daemon = daemon_of(sandbox)
        assert live([daemon]), "the launcher's daemon outlives it"
        run.signal(15)
        assert run.wait() == 143
        out = run.stdout()
        assert "stopping 1 running process and the daemons the runs left: SIGTERM now" in out
        assert "task             KILLING → KILLED" in out
        assert not (sandbox / "handled").exists(), "the daemon's SIGTERM handler ran"
        assert not live([daemon])
    finally:
        run.close()
        kill_leftovers(task_pids(sandbox))


def test_the_executor_reports_task_killed_once_the_daemon_has_stopped(tmp_path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    with AgentSimulator(sandbox=sandbox) as sim:
        sim.launch_executor([sys.executable, "-m", "executor", "executor"], cwd=sandbox)
        sim.wait_subscribed(timeout_secs=15)
        sim.launch(make_task_info("task-1", encode(load_job(job(tmp_path)))))
        sim.wait_for_state("task-1", "TASK_RUNNING", 20)
        daemon = daemon_of(sandbox)
        wait_for(lambda: any(r.get("process") == "launch" and r.get("to") == "SUCCESS"
                             for r in checkpoint_records(sandbox)), 10, message="the launcher's exit 0")
        assert live([daemon]), "the launcher's daemon outlives it"
        sim.kill("task-1")
        sim.wait_for_state("task-1", "TASK_KILLED", 20)
        assert not (sandbox / "handled").exists(), "the daemon's SIGTERM handler ran before TASK_KILLED"
        wait_for(lambda: not live([daemon]), 10, message="the daemon gone")
