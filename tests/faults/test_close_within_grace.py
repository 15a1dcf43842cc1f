"""`stoker executor`'s close after SHUTDOWN, within the agent's shutdown grace.

Was: a close whose cgroup kill its 2 s deadline cut (a deep tree, a slow host) waited for
the watchdog to finish the tree, up to 1 + 10 s (`WATCHDOG_EXIT_SECS` + the watchdog's own
bound, `watchdogsh.CGROUP_SECS`), though the agent destroys the container once its
`executor_shutdown_grace_period` is over (5 s by default): the executor was SIGKILLed in the
middle of its close, its exit status and its last lines lost. Now every wait of the close is
bounded by what is left of the grace (less `EXIT_MARGIN_SECS`): the executor exits on its
own, after one WARNING line (`watchdog_left`), and the watchdog, which outlives it, finishes
the tree. A SHUTDOWN that comes while the close of a task a KILL ended waits for the
watchdog bounds that wait too (was: read once as the close began, none then: the executor
was destroyed mid-wait).

The tree: the task's v1 freezer cgroup with one below it (so that the kill's walk, its
deadline 0 s to stand for a slow host, is cut), where a process waits in D state on a FUSE
request its server holds (`tests/support/fuse_server.py`) until the test lets it go (the
server ended: the held process exits), once the executor has exited: the watchdog removes the
cgroup then. The executor runs in a mount namespace of its own (`unshare`), the server and
the held process in it too (`nsenter`), so that the mount dies with them.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import cgroups as cgroup_support
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.agents import sandboxed_agent
from tests.support.executor_e2e import EXECUTOR, document, service
from tests.support.fuse_held import UNSHARED, in_namespace_of, needs_fuse_namespaces, serve_held_in
from tests.support.importhook import patched_at_load
from tests.support.stoker_proc import REPO
from tests.support.users import needs_root
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.serial, pytest.mark.timeout(90)]  # serial: the agent's grace

HOLD_SECS = 60.0  # past the grace and every wait of the test: it lets the server go itself (was 8 s, waited out)
CUT_AT_ONCE = patched_at_load("executor.procs.cgrouplife", """
    def _patch(module):
        module.CGROUP_KILL_SECS = 0.0  # a host too slow for a step of the kill's walk
""")


def _freezer_root() -> str:
    """Where the v1 freezer hierarchy is mounted: the test run's freezer cgroup less its path."""
    line = next(x for x in Path("/proc/self/cgroup").read_text().splitlines() if x.split(":")[1] == "freezer")
    inside = line.split(":", 2)[2].rstrip("/")
    assert cgroup_support.FREEZER.endswith(inside), (cgroup_support.FREEZER, inside)
    return cgroup_support.FREEZER[:len(cgroup_support.FREEZER) - len(inside)]


@contextlib.contextmanager
def _held_below(tmp_path: Path, shutdown_grace: str) -> Iterator[tuple[AgentSimulator, str, Callable[[], None]]]:
    """The agent and the executor (its cgroup kill cut at once), task-1 RUNNING, its v1
    freezer cgroup, with one below it where a process waits in D state, and what lets it go
    (the FUSE server ended: the held request fails, the process exits; done again at the end)."""
    if (why := cgroup_support.unavailable(cgroup_support.FREEZER)) is not None:
        pytest.skip(f"no v1 freezer task cgroup here: {why}")
    hook, point, ready = tmp_path / "hook", tmp_path / "mnt", tmp_path / "ready"
    hook.mkdir()
    point.mkdir()
    (hook / "sitecustomize.py").write_text(CUT_AT_ONCE)
    groups, started = cgroup_support.CgroupTracker(), []
    run = ("cg=" + _freezer_root() + "$(sed -n 's/^[0-9]*:freezer://p' /proc/self/cgroup); "
           'mkdir "$cg/below" && echo "$cg" > cg.path.new && mv cg.path.new cg.path; exec sleep 600')
    with sandboxed_agent(tmp_path) as agent:
        try:
            proc = agent.launch_executor([*UNSHARED, *EXECUTOR],
                                         env_overrides={"PYTHONPATH": f"{hook}{os.pathsep}{REPO}",
                                                        "STOKER_CGROUPS": cgroup_support.FREEZER},
                                         cwd=agent.sandbox, shutdown_grace=shutdown_grace)
            agent.wait_subscribed(timeout_secs=10)
            started.append(serve_held_in(proc.pid, point, HOLD_SECS, ready))
            agent.launch(make_task_info("task-1", document(tmp_path, service(run))))
            agent.wait_for_state("task-1", "TASK_RUNNING", 15)
            cg_path = agent.sandbox / "cg.path"
            wait_for(cg_path.exists, 10, message="the task's cgroup, and one below it")
            directory = cg_path.read_text().strip()
            groups.add(directory)
            started.append(in_namespace_of(proc.pid, "import os, sys; open(sys.argv[1], 'w').write(str(os.getpid())); "
                                            "os.stat(sys.argv[2])", f"{directory}/below/cgroup.procs", str(point)))
            wait_for(ready.exists, 10, message="the held member's request read and held")
            yield agent, directory, lambda: _end(started[:1])
        finally:
            _end(started)  # the server first: the held member exits then (was: the member
            groups.cleanup()  # first, its wait the rest of the hold)


def _end(children: list[subprocess.Popen]) -> None:
    """Each child killed and waited for, in order (the FUSE server before the process it holds)."""
    for child in children:
        child.kill()
        child.wait()


@needs_root
@needs_fuse_namespaces
def test_a_close_its_cgroup_deadline_cut_ends_within_the_agents_shutdown_grace(tmp_path):
    with _held_below(tmp_path, "5secs") as (agent, directory, let_go):
        agent.shutdown()
        status = agent.wait_exit(15)
        log = agent.executor_log()
        assert (status, agent.destroyed_after_grace) == (0, False), log[-3000:]
        assert agent.states("task-1")[-1] == "TASK_KILLED", agent.states("task-1")
        assert "cgroup_close_cut " in log and "watchdog_left " in log, log[-3000:]
        assert "watchdog_stuck" not in log, log[-3000:]
        assert os.path.isdir(directory), "held: the watchdog's to remove once its member exits"
        let_go()  # within the watchdog's own bound (`watchdogsh.CGROUP_SECS`, 10 s)
        wait_for(lambda: not os.path.exists(directory), 15,
                 message="the task's cgroup removed by the watchdog, the executor gone")


@needs_root
@needs_fuse_namespaces
def test_a_shutdown_during_the_close_of_a_killed_task_bounds_its_wait_for_the_watchdog(tmp_path):
    with _held_below(tmp_path, "3secs") as (agent, _, _let_go):
        agent.kill("task-1")
        agent.wait_for_state("task-1", "TASK_KILLED", 15)
        wait_for(lambda: "cgroup_close_cut " in agent.executor_log(), 15,
                 message="the close, its cgroup's kill cut, waiting for the watchdog")
        agent.shutdown()  # the held member outlives the grace: the watchdog is still at work then
        status = agent.wait_exit(15)
        log = agent.executor_log()
        assert (status, agent.destroyed_after_grace) == (0, False), log[-3000:]
        assert "watchdog_left " in log and "watchdog_stuck" not in log, log[-3000:]
