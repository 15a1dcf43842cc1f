"""The disk-limit check end to end: the real `stoker executor` under the agent simulator, and
`stoker run --disk-limit on`, each sampling every 50 ms: a task within its `Resources.disk`
runs on, one past it ends TASK_FAILED with Aurora's message and no process left."""
from __future__ import annotations

import json
import re
import sys
import textwrap
import time
from pathlib import Path

from config.document import encode
from config.loader import load_job
from tests.support.agent_sim import make_task_info
from tests.support.ports import free_ports
from tests.support.stoker_proc import StokerProcess, kill_leftovers, live, task_pids
from tests.support.waiting import wait_for

MB = 1024 * 1024
EXCEEDED = re.compile(r"Disk limit exceeded\.  Reserved 1048576 bytes vs used (\d+) bytes\.")
# 300 kB at once, 1.2 MB more once the test says go: under the 1 MB reserved, then over it
GROWS = ("head -c 300000 /dev/urandom > part1; while [ ! -e go ]; do sleep 0.02; done; "
         "head -c 1200000 /dev/urandom > part2; sleep 60")


def config(tmp_path: Path, kind: str, cmdline: str) -> Path:
    path = tmp_path / f"job{time.monotonic_ns()}.aurora"
    path.write_text(textwrap.dedent(f"""
        jobs = [{kind}(cluster='local', role='me', environment='test', name='grows',
                       task=Task(processes=[Process(name='w', cmdline='''{cmdline}''')],
                                 resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB), finalization_wait=1))]
    """))
    return path


def test_stoker_executor_fails_a_task_once_past_its_disk_and_lets_it_run_until_then(agent, tmp_path):
    agent.launch_executor([sys.executable, "-m", "executor", "executor"], cwd=agent.sandbox,
                          env_overrides={"STOKER_DISK_CHECK_INTERVAL": "50ms", "STOKER_LOG_LEVEL": "DEBUG"})
    agent.wait_subscribed(timeout_secs=10)
    agent.launch(make_task_info("task-1", encode(load_job(config(tmp_path, "Service", GROWS))),
                                ports=free_ports(1)))
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    wait_for(lambda: agent.executor_log().count("disk_sample ") >= 3 and (agent.sandbox / "part1").exists())
    pids = wait_for(lambda: task_pids(agent.sandbox))
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING"]  # within its limit: runs on
    def usage() -> dict:  # the last sample, as `stoker status` and the observer read it
        return json.loads((agent.sandbox / ".stoker/usage.json").read_text())
    assert wait_for(lambda: usage()["disk_sample"]["used_bytes"] >= 300000) and usage()["disk_reserved"] == MB
    (agent.sandbox / "go").touch()
    failed = agent.wait_for_state("task-1", "TASK_FAILED", 10)
    match = EXCEEDED.fullmatch(failed.message)
    assert match and int(match.group(1)) > MB, failed.message
    assert failed.healthy is None
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]
    assert not live(pids)
    log = agent.executor_log()
    assert log.count("disk_limit_exceeded") == 1 and "used_bytes=" in log
    assert agent.wait_exit(10) == 0


def test_stoker_run_with_the_check_on_fails_a_job_past_its_disk(tmp_path):
    sandbox = tmp_path / "sandbox"
    run = StokerProcess(["run", str(config(tmp_path, "Job", "head -c 1200000 /dev/urandom > blob; sleep 60")),
                         "--sandbox", str(sandbox), "--disk-limit", "on", "--disk-check-interval", "50ms"],
                        tmp_path)
    try:
        assert run.wait() == 1
        out = run.stdout()
        assert EXCEEDED.search(out), out
        assert not live(task_pids(sandbox))
    finally:
        run.close()
        kill_leftovers(task_pids(sandbox))
