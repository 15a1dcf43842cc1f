"""`prepare_launch` (`executor/mesos/launch.py`) in this process: the TaskInfo's kill grace
kept in both forms, an Aurora task's host name when its slaveHost is empty, a portmap whose
aliases form a cycle (refused as the document is read), and the too-few-ports refusal's
words, its names cut and counted."""
from __future__ import annotations

import json

import pytest

from config.document import encode
from config.loader import load_job
from executor.mesos.launch import LaunchError, prepare_launch, resolve_ports
from tests.support.agent_sim import make_task_info
from tests.support.aurora_tasks import assigned_task, client_json
from tests.support.configs import write_config

JOB = """jobs = [Job(cluster='c', role='r', environment='prod', name='web',
  task=Task(processes=[Process(name='p', cmdline='x {{thermos.ports[http]}} on {{mesos.hostname}}')],
            resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),
  announce=Announcer(portmap={'aurora': 'http', 'admin': 'http'}))]
"""


def _launched(data: bytes, **kw):
    return prepare_launch(make_task_info("t-1", data, ports=[31000], **kw), task_id="t-1", hostname="h1",
                          framework_user=None)


def test_the_task_info_s_kill_grace_is_kept_in_either_form(tmp_path):
    document = encode(load_job(write_config(tmp_path, JOB)))
    aurora = assigned_task(client_json(write_config(tmp_path, JOB)), role="r", name="web", environment="prod",
                           task_id="t-1", ports={"http": 31005})
    for data in (document, aurora):
        assert _launched(data, kill_policy_secs=7.5).kill_grace_secs == 7.5
        assert _launched(data).kill_grace_secs is None


def test_an_aurora_task_with_no_slave_host_is_bound_with_this_host_s_name(tmp_path):
    aurora = assigned_task(client_json(write_config(tmp_path, JOB)), role="r", name="web", environment="prod",
                           task_id="t-1", host="", ports={"http": 31005})
    launch = _launched(aurora)
    assert launch.hostname == "h1" and launch.tree["task"]["processes"][0]["cmdline"] == "x 31005 on h1"
    named = assigned_task(client_json(write_config(tmp_path, JOB)), role="r", name="web", environment="prod",
                          task_id="t-1", host="agent3", ports={"http": 31005})
    assert _launched(named).hostname == "agent3"


def test_a_portmap_whose_aliases_form_a_cycle_is_an_invalid_task(tmp_path):
    document = json.loads(encode(load_job(write_config(tmp_path, JOB))))
    document["job"]["announce"]["portmap"] = {"a": "b", "b": "a", "http": "a"}
    with pytest.raises(LaunchError) as refused:
        _launched(json.dumps(document).encode())
    assert str(refused.value) == ("invalid task: invalid task document: task document: job c/r/prod/web: "
                                  "job.announce.portmap: the aliases a -> b -> a form a cycle")
    assert refused.value.reason == "REASON_TASK_INVALID"


def test_too_few_ports_names_what_is_needed_and_what_has_no_port():
    with pytest.raises(LaunchError) as refused:
        resolve_ports(["web", "admin", "http"], {"http": 31000}, [31000, 31001])
    assert str(refused.value) == ("invalid task: too few ports: the task needs 3 (admin, http, web); no port for "
                                  "web (assigned_ports has 1, the ports resource offers 2)")
    many = [f"p{i:02d}" for i in range(23)] + ["x" * 70]
    with pytest.raises(LaunchError) as refused:
        resolve_ports(many, {}, [])
    shown = ", ".join(many[:20])
    assert str(refused.value) == (f"invalid task: too few ports: the task needs 24 ({shown} and 4 more); no port "
                                  f"for {shown} and 4 more (assigned_ports has 0, the ports resource offers 0)")
    with pytest.raises(LaunchError) as refused:
        resolve_ports(["x" * 70], {}, [])
    assert f"needs 1 ({'x' * 61}...); no port for {'x' * 61}..." in str(refused.value)
    assert resolve_ports(["a", "b"], {"b": 5}, [5, 7, 9]) == {"a": 7, "b": 5}


def test_the_names_shown_are_cut_past_their_bounds_only():
    twenty = [f"{i:02d}" + "y" * 62 for i in range(20)]  # twenty names of 64 characters: each whole
    with pytest.raises(LaunchError) as refused:
        resolve_ports(twenty, {}, [])
    assert f"needs 20 ({', '.join(twenty)}); no port for {', '.join(twenty)} (assigned" in str(refused.value)
