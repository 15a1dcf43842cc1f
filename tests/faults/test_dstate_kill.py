"""A task whose SIGKILLed process cannot die (in D state: a FUSE server holds its request)
still ends, TASK_KILLED, within the agent's shutdown grace.

Was: the task `stat MOUNT & exec sleep 600`, SHUTDOWN with a 5 s grace: SIGTERM ends `sleep`
(the run's top) and the run drains (`draining.py`) while `stat` waits on the held request;
the grace's SIGKILL (4 s) reaches `stat`, which cannot die in D state, so the run's exit,
posted once its last process is reaped, never came; the planner gave the run up 1 s after
its SIGKILL, at the grace's very end: the agent destroyed the executor (exit -9) and
reported TASK_FAILED. Now a run whose every process left was SIGKILLed ends for the report
`SIGKILL_GONE_SECS` after the SIGKILL (docs/design.md §5), its message naming what is not yet
gone (pid, state D, command); the close and the watchdog SIGKILL it again.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.agents import sandboxed_agent
from tests.support.executor_e2e import EXECUTOR, document, service
from tests.support.fuse_held import UNSHARED, needs_fuse_namespaces, serve_held_in
from tests.support.stoker_proc import REPO, StokerProcess
from tests.support.users import needs_root
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.serial, pytest.mark.timeout(90)]  # serial: the agent's grace

HOLD_SECS = 20.0  # past the grace and the close: the server's end in `finally` lets it go
LEFT = re.compile(r"(WARNING|ERROR) +\S+ cgroup_remove_failed task=\S+ cgroup=(\S+)")


def _let_go(server: subprocess.Popen, said: Callable[[], str]) -> None:
    """End the FUSE server (the held process's request ends, and it exits), then wait for the
    watchdog to remove the task's cgroup its close left it (named in what the run `said`)."""
    server.kill()
    server.wait()
    if found := LEFT.search(said()):
        wait_for(lambda: not os.path.exists(found.group(2)), 30, message="the task's cgroup removed by the watchdog")


def _said_of_the_cgroup_left(text: str) -> None:
    """Where the close left the task's cgroup (a member in D state) to the watchdog: a WARNING
    that says so and that it did not wait for that member, no `watchdog_stuck`, and
    `watchdog_left` saying why (finding 4)."""
    found = LEFT.search(text)
    if found is None:
        return  # no task cgroup here: the marker and the watchdog's walk only
    assert found.group(1) == "WARNING" and "the watchdog (pid" in text, text[-3000:]
    # the close's wait ends once the member the task's end named is all that holds it (was: its 2 s)
    assert "SIGKILLed and not yet gone, named already: not waited for)" in text, text[-3000:]
    assert "watchdog_stuck" not in text and "watchdog_left " in text, text[-3000:]


@contextlib.contextmanager
def _running_held(tmp_path: Path, cmdline: str, grace: str) -> Iterator[AgentSimulator]:
    """The executor in a mount namespace of its own, a FUSE mount there holding its first
    request, and task-1 RUNNING `cmdline` (MOUNT: the mount point), its request held."""
    point, ready = tmp_path / "mnt", tmp_path / "ready"
    point.mkdir()
    with sandboxed_agent(tmp_path) as agent:
        proc = agent.launch_executor([*UNSHARED, *EXECUTOR], env_overrides={"PYTHONPATH": str(REPO)},
                                     cwd=agent.sandbox, shutdown_grace=grace)
        agent.wait_subscribed(timeout_secs=10)
        server = serve_held_in(proc.pid, point, HOLD_SECS, ready)
        try:
            task = document(tmp_path, service(cmdline.replace("MOUNT", str(point))))
            agent.launch(make_task_info("task-1", task))
            agent.wait_for_state("task-1", "TASK_RUNNING", 15)
            wait_for(ready.exists, 15, message="the task's request to the mount, read and held")
            yield agent
        finally:
            _let_go(server, agent.executor_log)


@needs_root
@needs_fuse_namespaces
@pytest.mark.parametrize("cmdline", ["stat MOUNT >/dev/null 2>&1 & exec sleep 600", "exec stat MOUNT"],
                         ids=["draining", "top"])
def test_a_shutdown_whose_sigkill_leaves_a_process_in_d_state_reports_task_killed_within_the_grace(
        tmp_path, cmdline):
    with _running_held(tmp_path, cmdline, "5secs") as agent:
        agent.shutdown()
        status = agent.wait_exit(15)
        log = agent.executor_log()
        assert (status, agent.destroyed_after_grace) == (0, False), log[-3000:]
        final = agent.updates("task-1")[-1]
        assert final.state == "TASK_KILLED", (agent.states("task-1"), final.message)
        assert "SIGKILLed and not yet gone" in final.message and "state D" in final.message, final.message
        assert "stat" in final.message, final.message
        _said_of_the_cgroup_left(log)


@needs_root
@needs_fuse_namespaces
def test_a_stoker_run_stopped_while_a_process_is_held_in_d_state_ends_saying_what_is_left(tmp_path):
    point, ready, sandbox, mounted = tmp_path / "mnt", tmp_path / "ready", tmp_path / "sb", tmp_path / "mounted"
    point.mkdir()
    os.mkfifo(mounted)
    config = tmp_path / "job.aurora"
    config.write_text(textwrap.dedent(service(f"read _ < {mounted}; stat {point} >/dev/null 2>&1 & exec sleep 600")))
    args = ["run", str(config), "--sandbox", str(sandbox), "--root", str(tmp_path / "root"), "--kill-grace", "1"]
    proc = StokerProcess(args, tmp_path, launcher=tuple(UNSHARED))
    server = None
    try:
        proc.wait_output("RUNNING", 30)
        server = serve_held_in(proc.pid, point, HOLD_SECS, ready)
        with open(mounted, "w") as fifo:  # the task reads it, then stats the mount
            fifo.write("go\n")
        wait_for(ready.exists, 15, message="the task's request to the mount, read and held")
        proc.signal(signal.SIGTERM)
        status = proc.wait(HOLD_SECS / 2)  # ends long before the server lets the process go
        out = proc.stdout()
        assert status == 143, (status, out, proc.stderr())
        assert "KILLED" in out and "SIGKILLed and not yet gone" in out and "state D" in out, out
        _said_of_the_cgroup_left(proc.stderr())
    finally:
        proc.close()
        if server is not None:
            _let_go(server, proc.stderr)
