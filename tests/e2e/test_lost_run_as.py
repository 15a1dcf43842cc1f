"""A LOST task whose processes ran as a user other than its sandbox's owner: their leftovers
are judged against the uid its checkpoint's header says they ran as (`run_uid`), not the
sandbox's owner (`inspection.trusted_run_uid`, `leftoverprocs.by_user`).

The one such path Stoker has: a Docker task runs as the image's user, which is the
executor's own (in the container), whoever the agent gave the sandbox to (Mesos chowns it to
the task's user: the framework's, or the role). No Docker engine here: the real executor, as
root, runs a Docker task (`container=Docker(...)`: it only decides who the processes run as)
in a sandbox a throwaway user owns, as that agent would have made it. Was: once its
supervisor and watchdog were SIGKILLed, `stoker status` showed its own leftover as another
user's process carrying its marker (`foreign_processes`), counted nowhere.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import textwrap

import psutil
import pytest

from executor.cli.main import main
from tests.support import cgroups
from tests.support.agent_sim import make_task_info
from tests.support.aurora_tasks import assigned_task, client_json
from tests.support.proc_scan import kill_carrying, task_pids_by_marker
from tests.support.stoker_proc import checkpoint_records
from tests.support.users import needs_root, open_agent_sim, throwaway_user
from tests.support.waiting import stopped_whole, wait_for

pytestmark = pytest.mark.timeout(60)

TID = "www-data-test-who-0-5c2d1e0f"
DOCKER = """
    who = Process(name='who', cmdline='exec sleep 600')
    jobs = [Service(cluster='devcluster', role='%(role)s', environment='test', name='who',
                    task=Task(processes=[who], resources=Resources(cpu=0.1, ram=8*MB, disk=8*MB)),
                    container=Docker(image='debian:bookworm'))]
"""


def _lose(supervisor: int) -> None:
    """SIGKILL the supervisor and its watchdog, the watchdog stopped first, while its
    supervisor is (a live supervisor continues a stopped watchdog at once): the task's
    processes run on, LOST."""
    (watchdog,) = [c for c in psutil.Process(supervisor).children() if "stoker-watchdog" in c.cmdline()]
    os.kill(supervisor, signal.SIGSTOP)
    wait_for(lambda: stopped_whole(supervisor), 5, message="the supervisor stopped, every thread")
    watchdog.suspend()
    os.kill(supervisor, signal.SIGKILL)
    watchdog.kill()


@needs_root
def test_a_lost_docker_task_s_leftovers_are_its_own_whoever_owns_its_sandbox(tmp_path, capsys):
    with throwaway_user() as (user, _group), open_agent_sim() as sim:
        os.chown(sim.sandbox, user.pw_uid, user.pw_gid)  # the agent gave it to the task's user
        job = tmp_path / "who.aurora"
        job.write_text(textwrap.dedent(DOCKER % dict(role=user.pw_name)))
        data = assigned_task(client_json(job), role=user.pw_name, name="who", container_kind="docker")
        sim.launch_executor([sys.executable, "-m", "executor", "executor"], cwd=sim.sandbox)
        sim.wait_subscribed(timeout_secs=10)
        sim.launch(make_task_info(TID, data))
        sim.wait_for_state(TID, "TASK_RUNNING", 15)
        (header,) = [r for r in checkpoint_records(sim.sandbox) if r["kind"] == "header"]
        marker = header["marker"]
        groups = cgroups.CgroupTracker()  # its task cgroup, which a LOST task leaves
        try:
            assert header["run_uid"] == os.getuid() != user.pw_uid  # the executor's, not the sandbox's owner
            (worker,) = wait_for(lambda: task_pids_by_marker(marker), 10, message="the task's process")
            groups.add_of(worker)
            _lose(header["supervisor_pid"])
            sim.wait_exit(10)
            capsys.readouterr()
            assert main(["status", str(sim.sandbox), "--json"]) == 0
            doc = json.loads(capsys.readouterr().out)
            assert doc["state"] == "LOST"
            assert doc["foreign_processes"] == [], doc["foreign_processes"]
            assert [(p["pid"], p["process"], p["run"]) for p in doc["leftovers"]] == [(worker, "who", 0)]
        finally:
            kill_carrying(f"STOKER_TASK_MARKER={marker}")
            groups.cleanup()
