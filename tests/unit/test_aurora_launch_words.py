"""`config.aurora.launch`'s refusals and warning as whole lines, at their bounds: a task id
cut at 120 characters, the first 20 unknown keys each cut at 60, a lifecycle port's name cut at
60, a legacy payload's field and cluster references named, and the host a task without one is
bound with (`test_aurora_launch.py` has the launches as Aurora's scheduler sends them)."""
from __future__ import annotations

import json

import pytest

from config.aurora.errors import TaskDataError
from config.aurora.launch import aurora_launch, bind_aurora
from config.aurora.taskdata import decode_task_data
from config.schema import Job
from tests.support.aurora_tasks import assigned_task

TID = "www-data-prod-web-0-8f2d"
TASK = {"name": "t", "processes": [{"name": "p", "cmdline": "echo {{mesos.hostname}} {{thermos.ports[http]}}"}],
        "resources": {"cpu": 1.0, "ram": 1024, "disk": 1024}}
JOB = {"task": TASK, "role": "r", "environment": "e", "name": "j", "cluster": "c"}


def refused(doc: dict | None = None, **fields) -> str:
    raw = assigned_task(json.dumps(JOB if doc is None else doc), **{"role": "r", "task_id": TID,
                                                                    "ports": {"http": 31001}, **fields})
    with pytest.raises(TaskDataError) as caught:
        aurora_launch(decode_task_data(raw))
    return str(caught.value)


def test_a_task_id_is_shown_to_its_first_120_characters():
    said = refused(task_id="t" * 200, executor_name="Other")
    assert said == (f"Aurora task {'t' * 117}...: task.executorConfig.name is 'Other', not 'AuroraExecutor': Stoker "
                    "runs Thermos tasks, whose executor config carries the Aurora client's job JSON")
    assert refused(task_id="t" * 120, executor_name="Other").startswith(f"Aurora task {'t' * 120}: ")


def test_unknown_keys_are_the_first_20_each_cut_at_60_then_every_key_the_schema_knows():
    doc = {**JOB, **{f"k{i:02d}": 1 for i in range(21)}, "a" * 70: 1}
    shown = ", ".join([f"'{'a' * 57}...'", *(f"'k{i:02d}'" for i in range(19))])
    assert refused(doc) == (
        f"Aurora task {TID}: the MesosJob in task.executorConfig.data has keys Stoker's schema does not know: "
        f"{shown} (a newer Aurora client?); it knows {', '.join(sorted(Job.TYPEMAP))}")


def test_a_legacy_instance_s_bad_field_is_named_under_instance():
    legacy = {"task": TASK, "instance": "x", "role": "r", "environment": "e"}
    assert refused(legacy) == (f"Aurora task {TID}: task.executorConfig.data: invalid instance: "
                               "instance.instance = 'x' is not an integer")


def test_every_cluster_reference_of_a_legacy_instance_is_named():
    task = {**TASK, "processes": [{"name": "p", "cmdline": "echo {{cluster.name}} {{cluster}} {{clusters}}"}]}
    legacy = {"task": task, "instance": 0, "role": "r", "environment": "e"}
    assert refused(legacy) == (f"Aurora task {TID}: Unexpected unbound refs: {{{{cluster}}}} {{{{cluster.name}}}}. "
                               "The legacy MesosTaskInstance has no cluster.")


def test_a_lifecycle_port_s_name_is_cut_at_60_in_its_warning():
    port = "p" * 70
    launch = aurora_launch(decode_task_data(assigned_task(
        json.dumps({**JOB, "lifecycle": {"http": {"port": port}}}), role="r", ports={"http": 31001})))
    cut = f"{'p' * 57}..."
    assert launch.warnings == (
        f"job.lifecycle.http.port is '{cut}', a port the task does not have (Aurora's client asks the scheduler only "
        "for the ports the processes and the Announcer's portmap name), so the task has no HTTP lifecycle: a kill goes "
        f"straight to SIGTERM, as with Thermos; to have it, reference {{{{thermos.ports[{cut}]}}}} in a process or "
        f"alias it: Announcer(portmap={{'{cut}': 'http'}})",)


def test_a_task_without_a_host_is_bound_with_localhost_unless_told_another():
    launch = aurora_launch(decode_task_data(assigned_task(json.dumps(JOB), role="r", ports={"http": 31001}, host="")))
    assert bind_aurora(launch).spec.task.processes[0].cmdline == "echo localhost 31001"
    assert bind_aurora(launch, "agent7").spec.task.processes[0].cmdline == "echo agent7 31001"


def test_a_job_the_checks_refuse_is_named_by_the_field_that_carried_it_and_its_key():
    job = {**JOB, "task": {**TASK, "resources": {"cpu": 0.0, "ram": 1024, "disk": 1024}}}
    assert refused(job) == (f"Aurora task {TID}: task.executorConfig.data: job c/r/e/j: "
                            "job.task.resources.cpu = 0.0 must be more than 0")


def test_a_legacy_instance_s_unknown_keys_are_named_with_the_task():
    legacy = {"task": TASK, "instance": 0, "role": "r", "environment": "e", "zz": 1}
    assert refused(legacy) == (
        f"Aurora task {TID}: the MesosTaskInstance in task.executorConfig.data has keys Stoker's schema does not "
        "know: 'zz' (a newer Aurora client?); it knows announce, environment, health_check_config, instance, "
        "lifecycle, role, task")
