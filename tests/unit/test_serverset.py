"""Whether and what a task announces: Aurora's ServerSet path, ports and member JSON, as tables."""
from __future__ import annotations

import json

import pytest

from config.announcer import AnnouncerSpec
from config.spec import HealthSpec, JobSpec, TaskSpec
from config.zookeeper import AnnouncerSettings, ZkAuth, ZkCredential
from executor.task.serverset import (
    AnnounceError,
    Endpoint,
    first_join_bound_secs,
    make_endpoints,
    member_data,
    plan_announcement,
    serverset_path,
)

SETTINGS = AnnouncerSettings(ensemble="zk1:2181")


def job(ports=None, health=None, **kw) -> JobSpec:
    fields = dict(role="www-data", environment="prod", cluster="devcluster", name="hello", instance=3,
                  task_id="t-1", task=TaskSpec(name="hello", processes=()), health=health or HealthSpec(),
                  ports=ports if ports is not None else {"http": 31001, "health": 31000})
    fields.update(kw)
    return JobSpec(**fields)


@pytest.mark.parametrize("announce,settings", [
    (None, SETTINGS),  # the job has no Announcer
    (AnnouncerSpec(), None),  # the executor has no ensemble
    (None, None),
])
def test_no_announcement(announce, settings):
    assert plan_announcement(job(), announce, settings, "agent") is None


def test_the_default_announcement():
    a = plan_announcement(job(), AnnouncerSpec(), SETTINGS, "agent-host")
    assert a is not None
    assert (a.ensemble, a.path, a.member_prefix, a.shard) == (
        "zk1:2181", "/aurora/www-data/prod/hello", "/aurora/www-data/prod/hello/member_", 3)
    assert a.primary == Endpoint("agent-host", 31001)
    assert a.additional == {"aurora": Endpoint("agent-host", 31001), "health": Endpoint("agent-host", 31000),
                            "http": Endpoint("agent-host", 31001)}
    assert a.first_join_bound_secs == 15.0  # Aurora's defaults: 15 + 0 x 10


@pytest.mark.parametrize("settings,announce,path", [
    (AnnouncerSettings(ensemble="zk", serverset_path="/sd/"), AnnouncerSpec(), "/sd/www-data/prod/hello"),
    (AnnouncerSettings(ensemble="zk", serverset_path="/"), AnnouncerSpec(), "/www-data/prod/hello"),
    (AnnouncerSettings(ensemble="zk", allow_custom_serverset_path=True), AnnouncerSpec(zk_path="/uns/v1/svc/"),
     "/uns/v1/svc"),
])
def test_paths(settings, announce, path):
    a = plan_announcement(job(), announce, settings, "h")
    assert a is not None and a.path == path


def test_a_custom_path_needs_the_flag():
    with pytest.raises(AnnounceError) as info:
        plan_announcement(job(), AnnouncerSpec(zk_path="/uns/v1/svc"), SETTINGS, "h")
    assert str(info.value) == ("Announcer.zk_path = '/uns/v1/svc' needs the executor to be started with "
                               "--announcer-allow-custom-serverset-path")
    allowed = AnnouncerSettings(ensemble="zk", allow_custom_serverset_path=True)
    with pytest.raises(AnnounceError, match="Announcer.zk_path: 'relative' is not an absolute"):
        plan_announcement(job(), AnnouncerSpec(zk_path="relative"), allowed, "h")


@pytest.mark.parametrize("field,value", [
    ("role", "a/b"), ("environment", ".."), ("name", ""), ("name", "."), ("role", "tab\there"),
    ("environment", "line\nbreak"), ("name", "\x1f"), ("role", "del\x7f"), ("name", "c1\x9f"),
    ("environment", "private\ue000use"), ("name", "\ufff0"),
])
def test_job_names_that_are_no_node_names(field, value):
    with pytest.raises(AnnounceError, match=f"the job's {field} .* cannot be a ZooKeeper node name"):
        plan_announcement(job(**{field: value}), AnnouncerSpec(), SETTINGS, "h")


@pytest.mark.parametrize("field,value", [("role", "with space"), ("environment", "..."), ("name", "hélló.x"),
                                         ("name", "\xa0nbsp"), ("role", "\ud7ff")])
def test_job_names_that_are_node_names(field, value):
    a = plan_announcement(job(**{field: value}), AnnouncerSpec(), SETTINGS, "h")
    assert a is not None and a.path.split("/")[("role", "environment", "name").index(field) + 2] == value


def test_the_auth_settings_go_with_the_announcement():
    auth = ZkAuth(source="/etc/zk-auth.json", auth=(ZkCredential(scheme="digest", credential="u:p"),))
    a = plan_announcement(job(), AnnouncerSpec(), AnnouncerSettings(ensemble="zk", auth=auth), "h")
    assert a is not None and a.auth is auth
    plain = plan_announcement(job(), AnnouncerSpec(), SETTINGS, "h")
    assert plain is not None and plain.auth is None


def test_the_announcer_hostname_wins_over_the_agents():
    settings = AnnouncerSettings(ensemble="zk", hostname="announced.example")
    a = plan_announcement(job(), AnnouncerSpec(), settings, "agent-host")
    assert a is not None and a.primary.host == "announced.example"
    assert {e.host for e in a.additional.values()} == {"announced.example"}


@pytest.mark.parametrize("portmap,cycle", [
    ({"a": "a"}, "a -> a"),
    ({"a": "b", "b": "a"}, "a -> b -> a"),
    ({"x": "a", "a": "b", "b": "a"}, "x -> a -> b -> a"),
])
def test_a_portmap_cycle_fails_the_announcement(portmap, cycle):
    with pytest.raises(AnnounceError, match="Announcer.portmap: the aliases"):
        plan_announcement(job(), AnnouncerSpec(portmap=portmap), SETTINGS, "h")


@pytest.mark.parametrize("ports,primary_port,primary", [
    ({"http": 80, "admin": 81}, "http", Endpoint("h", 80)),
    ({"thrift": 9090}, "thrift", Endpoint("h", 9090)),
    ({"admin": 81}, "http", Endpoint("h", 0)),  # no such port: Aurora announces port 0
    ({}, "http", Endpoint("h", 0)),
])
def test_make_endpoints(ports, primary_port, primary):
    got_primary, additional = make_endpoints("h", ports, primary_port)
    assert got_primary == primary
    assert additional == {name: Endpoint("h", port) for name, port in ports.items()}


def test_member_data_is_a_serverset_service_instance():
    data = member_data(Endpoint("h", 80), {"http": Endpoint("h", 80), "admin": Endpoint("h", 81)}, 7)
    assert json.loads(data) == {
        "serviceEndpoint": {"host": "h", "port": 80},
        "additionalEndpoints": {"http": {"host": "h", "port": 80}, "admin": {"host": "h", "port": 81}},
        "status": "ALIVE",
        "shard": 7,
    }
    assert data.startswith(b'{"serviceEndpoint": ')  # the key order twitter.common writes


@pytest.mark.parametrize("initial,interval,failures,bound", [
    (15.0, 10.0, 0, 15.0), (15.0, 10.0, 3, 45.0), (0.0, 1.0, 2, 2.0), (2.5, 0.5, 1, 3.0),
])
def test_first_join_bound_is_auroras_announcer_timeout(initial, interval, failures, bound):
    health = HealthSpec(initial_interval_secs=initial, interval_secs=interval, max_consecutive_failures=failures)
    assert first_join_bound_secs(health) == bound


def test_serverset_path():
    assert serverset_path("/aurora", "r", "e", "n") == "/aurora/r/e/n"
    assert serverset_path("/a//b/", "r", "e", "n") == "/a/b/r/e/n"
