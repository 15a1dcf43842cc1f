"""A task id two running tasks share, in the observer: two `stoker executor`s under two
agent simulators (two frameworks' tasks), both given the task id `dup`, in one registry.
A Mesos task id is unique only within its framework; the observer answered 404 for such an
id, so a tenant hid any running task from it by taking its id. Each is reachable now by
its supervisor (`?supervisor=PID-START`), through the list's links, its page, its logs and
the API, and the bare id answers 300 naming both."""
from __future__ import annotations

import contextlib
import json
import re
import sys
from html import unescape

import pytest

from config.document import encode
from config.loader import load_job
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.observer import ObservedHost, config
from tests.support.stoker_proc import kill_leftovers, task_pids
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Two running tasks `dup` (one says `mine`, the other `theirs`) and an observer."""
    tmp_path = tmp_path_factory.mktemp("shared-id")
    host = ObservedHost(tmp_path)
    with contextlib.ExitStack() as stack:
        stack.callback(host.close)
        sims = []
        for who in ("mine", "theirs"):
            sandbox = tmp_path / f"sandbox-{who}"
            sandbox.mkdir()
            stack.callback(lambda s=sandbox: kill_leftovers(task_pids(s)))  # after its agent closed
            sim = stack.enter_context(AgentSimulator(sandbox=sandbox))
            sim.launch_executor([sys.executable, "-m", "executor", "executor"], cwd=sandbox,
                                env_overrides={"STOKER_ROOT": str(host.root)})
            sims.append(sim)
        for sim, who in zip(sims, ("mine", "theirs")):
            sim.wait_subscribed(timeout_secs=15)
            job = load_job(config(tmp_path, who, {"say": f"echo {who}; exec sleep 1000"}))
            sim.launch(make_task_info("dup", encode(job)))
        for sim in sims:
            sim.wait_for_state("dup", "TASK_RUNNING", 20)
        host.observe()
        yield host


def _links(page: str, prefix: str) -> list[str]:
    return [unescape(h) for h in re.findall(r'href="(' + re.escape(prefix) + r'[^"]*)"', page)]


def test_each_of_two_running_tasks_sharing_an_id_is_shown_with_its_own_logs(shared):
    listed = shared.json("/api/tasks")
    assert sorted(t["task_id"] for t in listed) == ["dup", "dup"]
    by_job = {t["job_key"].rsplit("/", 1)[1]: t for t in listed}
    for who, task in by_job.items():
        assert task["url"] == f"/api/tasks/dup?supervisor={task['supervisor']}"
        assert task["supervisor"].startswith(f"{task['supervisor_pid']}-")
        doc = shared.json(task["url"])
        assert doc["task"]["job_key"] == task["job_key"] and doc["task"]["sandbox"] == task["sandbox"]

        def said(supervisor: str = task["supervisor"]) -> str:
            return str(shared.json(f"/api/tasks/dup/processes/say/logs?supervisor={supervisor}")["data"])
        assert wait_for(said, 10) == f"{who}\n"
    # the list's links name each; its page links its own logs, which say its own words
    pages = _links(shared.get("/")[2].decode(), "/tasks/")
    assert sorted(pages) == sorted(f"/tasks/dup?supervisor={t['supervisor']}" for t in listed)
    for who, task in by_job.items():
        page = shared.get(f"/tasks/dup?supervisor={task['supervisor']}")[2].decode()
        assert task["sandbox"] in page
        (stdout, *_) = [u for u in _links(page, "/tasks/dup/processes/say/logs") if "stream=stdout" in u]
        assert f"supervisor={task['supervisor']}" in stdout
        log = shared.get(stdout + "&follow=1")[2].decode()
        assert f">{who}\n</pre>" in log
        api = unescape(re.search(r'data-api="([^"]+)"', log).group(1))  # what follow.js asks
        assert f"supervisor={task['supervisor']}" in api
        assert shared.json(api + "&run=0&offset=0")["data"] == f"{who}\n"


def test_the_bare_id_of_two_running_tasks_names_both_with_a_link_to_each(shared):
    listed = shared.json("/api/tasks")
    status, _, body = shared.get("/api/tasks/dup")
    doc = json.loads(body)
    assert status == 300 and "is the id of 2 running tasks" in doc["error"], doc
    assert sorted(c["url"] for c in doc["choices"]) == sorted(t["url"] for t in listed)
    status, _, body = shared.get("/tasks/dup/processes/say/logs?stream=stdout")
    page = body.decode()
    assert status == 300 and "Two or more running tasks have this id" in page
    links = _links(page, "/tasks/dup/processes/say/logs")
    assert sorted(links) == sorted(f"/tasks/dup/processes/say/logs?stream=stdout&supervisor={t['supervisor']}"
                                   for t in listed)
    assert sorted(shared.get(u)[2].decode().count(">mine\n</pre>") for u in links) == [0, 1]
    assert shared.get("/tasks/dup?supervisor=1-2")[0] == 404  # no such supervisor

