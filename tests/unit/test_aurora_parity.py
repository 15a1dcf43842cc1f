"""Stoker against Apache Aurora's own client and executor, on the jobs in tests/aurora/jobs.

`tests/aurora/expected.json` holds what Aurora 0.22's code made of each file, job and `--bind`
set: the client's executorConfig.data (or the client's refusal), the ports it asks the
scheduler for, the ports its executor resolves from the assigned ones, and each process's
final command line. For each case Stoker must: load the same file with the same bindings
into the same job JSON (or refuse it for the same unbound references), ask for the same
ports, and — given Aurora's own JSON in an AssignedTask — run the same command lines on the
same resolved ports; and `stoker run`'s binding of its own loaded job must agree too.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from config.aurora.launch import aurora_launch, bind_aurora
from config.aurora.taskdata import decode_task_data
from config.bind import bind
from config.errors import ConfigError
from config.loader import check_bound, load_job
from config.portmap import job_portmap, port_names, requested_ports
from tests.support.aurora_tasks import assigned_task, client_json

HERE = Path(__file__).resolve().parents[1] / "aurora"
CASES = json.loads((HERE / "expected.json").read_text())["cases"]


def case_id(case: dict) -> str:
    binds = ",".join(key for key, _ in case["bindings"]) or "no-bind"
    return f"{case['file']}:{case['job']}:{binds}"


def jobkey(case: dict) -> str:
    data = case["data"]
    return f"{data['cluster']}/{data['role']}/{data['environment']}/{data['name']}"


def bindings(case: dict) -> tuple[tuple[str, str], ...]:
    return tuple((key, value) for key, value in case["bindings"])


def refused(case: dict) -> bool:
    return "error" in case


def images(case: dict) -> bool:
    return "image" in case["container"].get("mesos", {})


def by_name(job: dict) -> dict:
    task = dict(job["task"], processes=sorted(job["task"]["processes"], key=lambda p: p["name"]))
    return dict(job, task=task)


def find_job(case: dict):
    path = HERE / "jobs" / case["file"]
    from config.loader import job_key, load_jobs

    keys = [job_key(j) for j in load_jobs(path)]
    [key] = [k for k in keys if k.endswith("/" + case["job"])]
    return path, key


@pytest.mark.parametrize("case", [c for c in CASES if refused(c)], ids=case_id)
def test_stoker_refuses_what_the_aurora_client_refuses(case):
    path, key = find_job(case)
    wanted = re.findall(r"{{[^{}]+}}", case["error"])
    with pytest.raises(ConfigError) as caught:
        check_bound(load_job(path, key, bindings(case)), str(path))
    assert "Config contains unbound variables: " + " ".join(wanted) in str(caught.value)


@pytest.mark.parametrize("case", [c for c in CASES if not refused(c)], ids=case_id)
def test_stoker_loads_the_job_the_aurora_client_sends(case):
    path, key = find_job(case)
    ours = json.loads(client_json(path, key, bindings(case)))
    # Numbers compare by value (Stoker's 5.0 seconds are Aurora's 5); Tasks.concat keeps the
    # processes in order where Aurora's passes them through a set (docs/aurora.md §11).
    assert by_name(ours) == by_name(case["data"])
    job = load_job(path, key, bindings(case))
    assert requested_ports(port_names(job), job_portmap(job.get())) == case["requested_ports"]


@pytest.mark.parametrize("case", [c for c in CASES if not refused(c)], ids=case_id)
def test_aurora_s_own_payload_runs_the_commands_thermos_runs(case):
    data = case["data"]
    raw = assigned_task(json.dumps(data), role=data["role"], environment=data["environment"], name=data["name"],
                        task_id=case["task_id"], host=case["host"], instance=case["instance"],
                        ports=case["assigned_ports"], container=case["container"])
    launch = aurora_launch(decode_task_data(raw))
    assert launch.ports == case["resolved_ports"]
    spec = bind_aurora(launch).spec
    assert {p.name: p.cmdline for p in spec.task.processes} == case["cmdlines"]
    assert launch.docker == ("docker" in case["container"])
    assert launch.image == images(case)  # run inside the image through mesos-containerizer (docs/aurora.md §13)


@pytest.mark.parametrize("case", [c for c in CASES if not refused(c)], ids=case_id)
def test_stoker_run_binds_the_same_commands_from_the_file(case):
    path, key = find_job(case)
    spec = bind(load_job(path, key, bindings(case)), instance=case["instance"], ports=case["resolved_ports"],
                task_id=case["task_id"], hostname=case["host"], user=case["data"]["role"])
    assert {p.name: p.cmdline for p in spec.task.processes} == case["cmdlines"]


def test_the_cases_cover_the_features():
    jobs = {c["job"] for c in CASES if not refused(c)}
    assert {"web", "web_quiet", "in_docker", "with_volumes", "from_image", "batch", "staged", "nightly"} <= jobs
    assert sum(refused(c) for c in CASES) == 4
