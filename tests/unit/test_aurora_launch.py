"""Aurora's AssignedTask made into the task Stoker runs, as Thermos' executor makes it: the
task id, host, instance, role, ports through the Announcer's portmap, the client's job JSON
(a Job, or the legacy MesosTaskInstance) and every refusal in words (docs/aurora.md §13).
AssignedTasks are written by thriftpy2's encoder from Stoker's IDL, in both field orders."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from config.aurora.errors import TaskDataError
from config.aurora.launch import DATA_FIELD, LEGACY_CLUSTER, aurora_launch, bind_aurora
from config.aurora.taskdata import decode_task_data
from config.errors import ConfigError
from config.spec import CheckKind
from executor.mesos.launch import LaunchError, prepare_launch
from tests.support.agent_sim import make_task_info
from tests.support.aurora_tasks import Order, assigned_task, client_json
from tests.support.configs import REPO, write_config

TID = "www-data-prod-web-1-8f2d"

WEB = """
    web = Process(name='web_{{mesos.instance}}',
                  cmdline='serve --port {{thermos.ports[http]}} --host {{mesos.hostname}} --id {{thermos.task_id}}'
                          ' --user {{thermos.user}} --role {{role}} --cluster {{cluster}}')
    jobs = [Service(cluster='devcluster', role='www-data', environment='prod', name='web',
                    task=Task(processes=[web], resources=Resources(cpu=0.5, ram=64*MB, disk=64*MB)),
                    announce=Announcer(portmap={'health': 'http'}),
                    health_check_config=HealthCheckConfig(initial_interval_secs=5, interval_secs=1))]
"""


def data(tmp_path, text=WEB, order=Order.ASCENDING, **kw):
    kw.setdefault("role", "www-data")
    kw.setdefault("name", "web")
    kw.setdefault("environment", "prod")
    kw.setdefault("ports", {"http": 31001})
    kw.setdefault("task_id", TID)
    return assigned_task(client_json(write_config(tmp_path, text)), order=order, **kw)


def launched(raw: bytes):
    launch = aurora_launch(decode_task_data(raw))
    return launch, bind_aurora(launch)


@pytest.mark.parametrize("order", list(Order), ids=lambda o: o.value)
def test_the_task_is_bound_from_the_assigned_task(tmp_path, order):
    launch, bound = launched(data(tmp_path, order=order, host="agent9.example.com", instance=1))
    task = launch.task
    assert (task.task_id, task.slave_host, task.instance_id, str(task.job)) == (
        TID, "agent9.example.com", 1, "www-data/prod/web")
    assert (launch.role, launch.docker, launch.legacy) == ("www-data", False, False)
    spec = bound.spec
    assert (spec.key, spec.instance, spec.task_id, spec.label) == ("devcluster/www-data/prod/web", 1, TID, "web.1")
    [process] = spec.task.processes
    assert process.name == "web_1"
    assert process.cmdline == (f"serve --port 31001 --host agent9.example.com --id {TID} --user www-data "
                               "--role www-data --cluster devcluster")
    # health -> http through the portmap: the HTTP check and the lifecycle use the http port
    assert spec.ports == {"health": 31001, "http": 31001}
    assert (spec.health.kind, spec.health.port) == (CheckKind.HTTP, 31001)
    assert spec.lifecycle is not None and spec.lifecycle.port == 31001
    assert spec.warnings == ()
    assert bound.tree["task"]["processes"][0]["name"] == "web_1"


def test_the_default_announcer_aliases_aurora_to_http_and_unmapped_names_are_warnings(tmp_path):
    text = WEB.replace("announce=Announcer(portmap={'health': 'http'})",
                       "announce=Announcer(portmap={'aurora': 'http', 'admin': 'nowhere'})")
    launch, bound = launched(data(tmp_path, text))
    assert launch.ports == {"aurora": 31001, "http": 31001}
    assert bound.spec.warnings[0].startswith("Task has unmapped port: admin => nowhere")
    assert bound.spec.health.kind is CheckKind.NONE  # no health port: the explicit check cannot run
    assert "configures an HTTP health check, but the task has no port named 'health'" in bound.spec.warnings[1]
    assert "Announcer(portmap={'health': 'http'})" in bound.spec.warnings[1]


def test_the_legacy_mesos_task_instance_is_accepted(tmp_path):
    legacy = {"task": {"name": "t", "processes": [{"name": "p", "cmdline": "echo {{instance}} {{mesos.instance}} "
                                                   "{{role}} {{environment}} {{thermos.ports[http]}}"}],
                       "resources": {"cpu": 1.0, "ram": 1024, "disk": 1024}},
              "instance": 4, "role": "www-data", "environment": "prod",
              "health_check_config": {"interval_secs": 2.0}}
    launch, bound = launched(assigned_task(json.dumps(legacy), role="www-data", name="web", instance=4,
                                           ports={"http": 31002}))
    assert launch.legacy
    assert bound.spec.key == f"{LEGACY_CLUSTER}/www-data/prod/web"
    assert bound.spec.task.processes[0].cmdline == "echo 4 4 www-data prod 31002"
    assert bound.spec.health.interval_secs == 2.0


def test_a_legacy_task_naming_the_cluster_is_refused(tmp_path):
    legacy = {"task": {"processes": [{"name": "p", "cmdline": "echo {{cluster}}"}]},
              "instance": 0, "role": "r", "environment": "e"}
    with pytest.raises(TaskDataError, match=r"Unexpected unbound refs: \{\{cluster\}\}. The legacy "):
        aurora_launch(decode_task_data(assigned_task(json.dumps(legacy), role="r")))


LIFECYCLE_ON = """
    web = Process(name='web', cmdline='serve --port {{thermos.ports[http]}}')
    jobs = [Service(cluster='devcluster', role='www-data', environment='prod', name='web',
                    task=Task(processes=[web], resources=Resources(cpu=0.5, ram=64*MB, disk=64*MB)),
                    announce=Announcer(portmap=%s),
                    lifecycle=LifecycleConfig(http=HttpLifecycleConfig(port='admin')))]
"""


def test_a_lifecycle_port_the_scheduler_did_not_assign_means_no_lifecycle_as_in_thermos(tmp_path):
    # Aurora's client asks the scheduler only for the ports the processes and the portmap
    # name, so `admin` is never assigned; Thermos then runs the task without the lifecycle.
    _, bound = launched(data(tmp_path, LIFECYCLE_ON % "{}"))
    assert bound.spec.lifecycle is None
    assert bound.spec.ports == {"http": 31001}
    [warning] = bound.spec.warnings
    assert warning.startswith("job.lifecycle.http.port is 'admin', a port the task does not have")
    assert "{{thermos.ports[admin]}}" in warning and "Announcer(portmap={'admin': 'http'})" in warning
    # once the portmap makes it one of the task's ports, the lifecycle uses it
    _, aliased = launched(data(tmp_path, LIFECYCLE_ON % "{'admin': 'http'}"))
    assert aliased.spec.lifecycle is not None and aliased.spec.lifecycle.port == 31001
    assert aliased.spec.warnings == ()


def test_a_heredoc_in_aurora_s_payload_is_left_as_written(tmp_path):
    doc = json.loads(client_json(write_config(tmp_path, WEB)))
    doc["task"]["processes"][0]["cmdline"] = "cat <<EOF>>out\n<<thermos.ports[http]>>\nEOF"
    _, bound = launched(assigned_task(json.dumps(doc), role="www-data", ports={"http": 31001}))
    assert bound.spec.task.processes[0].cmdline == "cat <<EOF>>out\n<<thermos.ports[http]>>\nEOF"


def _with(tmp_path, change):
    doc = json.loads(client_json(write_config(tmp_path, WEB)))
    change(doc)
    return json.dumps(doc)


REFUSED = {  # case: (change the AssignedTask's fields or the job JSON, the message's end)
    "executor": (dict(executor_name="Other"), "task.executorConfig.name is 'Other', not 'AuroraExecutor': "
                                              "Stoker runs Thermos tasks"),
    "not-json": (dict(job="{"), "task.executorConfig.data is not JSON (Could not deserialize thermos config: "),
    "not-object": (dict(job="[1]"), "task.executorConfig.data must be a JSON object (the job), not list"),
    "unknown-top": (dict(change=lambda d: d.update(zzz=1, aaa=2)),
                    "the MesosJob in task.executorConfig.data has keys Stoker's schema does not know: 'aaa', 'zzz'"),
    "unknown-nested": (dict(change=lambda d: d["task"]["processes"][0].update(sandbox_mode="x")),
                       "job.task.processes[0]: unknown field 'sandbox_mode'"),
    "cycle": (dict(change=lambda d: d.update(announce={"portmap": {"a": "b", "b": "a"}})),
              "job.announce.portmap: the aliases a -> b -> a form a cycle"),
    "unbound": (dict(change=lambda d: d["task"]["processes"][0].update(cmdline="echo {{mystery}}")),
                "Unexpected unbound refs: {{mystery}}. Make sure you are not nesting template variables."),
    "missing-port": (dict(ports={}), "the task requires unbound ports: http (the scheduler assigned none; "
                                     "through the Announcer's portmap: none)"),
    "unsafe-name": (dict(host="a/b", change=lambda d: d["task"]["processes"][0].update(name="w_{{mesos.hostname}}")),
                    "job.task.processes[0].name = 'w_a/b' is not a safe process name"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_an_unusable_aurora_task_is_refused_in_words(tmp_path, case):
    fields, words = REFUSED[case]
    fields = dict(fields)
    change = fields.pop("change", None)
    job = fields.pop("job", None) or (_with(tmp_path, change) if change else client_json(write_config(tmp_path, WEB)))
    raw = assigned_task(job, **{"role": "www-data", "ports": {"http": 31001}, "task_id": TID, **fields})
    with pytest.raises(ConfigError) as caught:
        launched(raw)
    assert str(caught.value).startswith(f"Aurora task {TID}: "), str(caught.value)
    assert words in str(caught.value)
    info = make_task_info(TID, raw)
    with pytest.raises(LaunchError, match="^invalid task: Aurora task"):
        prepare_launch(info, task_id=TID, hostname="h", framework_user=None)


@pytest.mark.parametrize("cmdline, refs", [("run {{thermos.ports[web]}}", ""),
                                            ("run {{thermos.ports[web]}} {{mystery}}", "{{mystery}}")])
def test_a_missing_port_is_named_once_as_a_port_not_among_aurora_s_unbound_refs(tmp_path, cmdline, refs):
    """Aurora's executor binds every port reference with a dummy before it looks for unbound
    refs, so its "Unexpected unbound refs" never lists one: a missing port is named as such."""
    job = _with(tmp_path, lambda d: d["task"]["processes"][0].update(cmdline=cmdline))
    with pytest.raises(ConfigError) as caught:
        launched(assigned_task(job, role="www-data", ports={"http": 31001}, task_id=TID))
    unexpected = f"Unexpected unbound refs: {refs}. Make sure you are not nesting template variables. " if refs else ""
    assert str(caught.value) == (f"Aurora task {TID}: {unexpected}the task requires unbound ports: web (the "
                                 "scheduler assigned http=31001; through the Announcer's portmap: health=31001, http=31001)")


def test_prepare_launch_takes_either_form(tmp_path):
    aurora = prepare_launch(make_task_info(TID, data(tmp_path, host="agent2")), task_id=TID, hostname="mine",
                            framework_user="fw")
    assert (aurora.hostname, aurora.user, aurora.aurora is not None) == ("agent2", "www-data", True)
    from config.document import encode
    from config.loader import load_job

    document = encode(load_job(write_config(tmp_path, WEB.replace("{{cluster}}", "x"), "doc.aurora")))
    mine = prepare_launch(make_task_info("t-1", document, ports=[32000]), task_id="t-1", hostname="mine",
                          framework_user="fw")
    assert (mine.hostname, mine.user, mine.aurora) == ("mine", "fw", None)
    # Stoker's own document resolves through the same portmap: health is http
    assert mine.spec.ports == {"health": 32000, "http": 32000}
    assert (mine.spec.health.kind, mine.spec.health.port) == (CheckKind.HTTP, 32000)


LAUNCH_JSON = """
import json, sys
from executor.mesos.launch import prepare_launch
from tests.support.agent_sim import make_task_info
info = make_task_info("t", sys.stdin.buffer.read(), ports=[31001])
launch = prepare_launch(info, task_id="t", hostname="h", framework_user=None)
print(json.dumps([launch.aurora is None, "thriftpy2" in sys.modules]))
"""


def test_a_json_launch_never_imports_thriftpy2(tmp_path):
    from config.document import encode
    from config.loader import load_job

    document = encode(load_job(write_config(tmp_path, WEB.replace("{{cluster}}", "x"))))
    done = subprocess.run([sys.executable, "-c", LAUNCH_JSON], input=document, capture_output=True, cwd=REPO,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [True, False]


def test_an_integer_of_more_digits_than_python_reads_in_aurora_s_payload_is_named(tmp_path):
    """`"max_failures": 1000...` (5000 digits) in executorConfig.data: json's ValueError said
    it "is not JSON (... Exceeds the limit (4300 digits) ... use sys.set_int_max_str_digits()",
    naming no field, where a config's `10**5000` is refused naming it."""
    job = _with(tmp_path, lambda d: d["task"].update(max_failures=123454321)).replace("123454321", "1" + "0" * 5000)
    raw = assigned_task(job, role="www-data", ports={"http": 31001}, task_id=TID)
    with pytest.raises(ConfigError) as caught:
        launched(raw)
    assert str(caught.value).endswith(f"{DATA_FIELD}: job.task.max_failures is an integer of more than 4300 digits: "
                                      "more than any count or size a task can use, and more than Python writes as text")


def test_the_unbound_message_lists_refs_and_ports_whole_up_to_its_bounds():
    """The message's parts, each at its bound: the first 20 unbound refs, one space between
    them, each cut at 80 characters; the missing ports and the assigned and resolved ports
    joined by ", ", each list cut at 300 characters."""
    from types import SimpleNamespace

    from config.aurora.launch import _unbound_message
    from config.errors import BindError

    refs = [f"{{{{r{n}}}}}" for n in range(21)]
    long_ref = "{{" + "x" * 77 + "}}"  # 81 characters: cut to 77 and "..."
    launch = SimpleNamespace(task=SimpleNamespace(assigned_ports={"a": 1, "b": 2}), ports={"a": 1, "b": 2})
    message = _unbound_message(BindError("m", [long_ref, *refs], ["web", "db"]), launch)
    shown = " ".join([long_ref[:77] + "...", *refs[:19]])
    assert message == (f"Unexpected unbound refs: {shown}. Make sure you are not nesting template variables. "
                       "the task requires unbound ports: web, db (the scheduler assigned a=1, b=2; through the "
                       "Announcer's portmap: a=1, b=2)")
    many = {f"port{n:03}": 30000 + n for n in range(40)}  # 40 of 13 characters and ", ": past 300
    listed = ", ".join(f"{k}={v}" for k, v in sorted(many.items()))
    launch = SimpleNamespace(task=SimpleNamespace(assigned_ports=many), ports=many)
    assert _unbound_message(BindError("m", [], ["web"]), launch) == (
        f"the task requires unbound ports: web (the scheduler assigned {listed[:297]}...; through the "
        f"Announcer's portmap: {listed[:297]}...)")
    launch = SimpleNamespace(task=SimpleNamespace(assigned_ports={"q": 1}), ports={"p": "9" * 298})  # 300: not cut
    assert _unbound_message(BindError("m", ["{{" + "y" * 76 + "}}"], ["web"]), launch) == (
        f"Unexpected unbound refs: {{{{{'y' * 76}}}}}. Make sure you are not nesting template variables. "
        f"the task requires unbound ports: web (the scheduler assigned q=1; through the Announcer's portmap: "
        f"p={'9' * 298})")


def test_a_json_escape_of_a_surrogate_in_the_job_is_refused_naming_the_field():
    """`"echo \\udcff"` in the client's job JSON (the Thrift path decodes its bytes as strict
    UTF-8; the escape is JSON's) ran as byte 0xff: half a UTF-16 pair is no character."""
    legacy = {"task": {"processes": [{"name": "p", "cmdline": "echo \udcff"}]},
              "instance": 0, "role": "r", "environment": "e"}
    with pytest.raises(TaskDataError, match=r"job\.task\.processes\[0\]\.cmdline = 'echo \\udcff' holds \\udcff, "
                                            r"half of a UTF-16 surrogate pair"):
        aurora_launch(decode_task_data(assigned_task(json.dumps(legacy), role="r")))
