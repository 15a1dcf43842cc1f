"""Ports through the Announcer's portmap: what is requested and how it resolves, as tables
(Aurora's PortResolver, AuroraConfig.ports and the executor's resolve_ports)."""
from __future__ import annotations

import pytest

from config.portmap import PortmapError, ResolvedPorts, job_portmap, requested_ports, resolve_portmap
from config.schema import Announcer, Job, Process, Resources, Task
from config.templates import flatten


@pytest.mark.parametrize("portmap,ports,resolved", [
    ({"aurora": "http"}, {"http": 80}, {"aurora": 80, "http": 80}),
    # Aurora's PortResolver docstring example
    ({"http": "80", "aurora": "http", "https": "aurora", "thrift": "service"}, {},
     {"http": 80, "aurora": 80, "https": 80}),
    # the scheduler's ports win over the portmap's entries of the same name
    ({"http": "80"}, {"http": 31001}, {"http": 31001}),
    # Aurora's e2e http_example job (docs/aurora.md): assigned health, http and tcp, portmap {alias: http}
    ({"alias": "http"}, {"health": 31000, "http": 31001, "tcp": 31002},
     {"alias": 31001, "health": 31000, "http": 31001, "tcp": 31002}),
    ({"health": "http"}, {"http": 31001}, {"health": 31001, "http": 31001}),
    ({"http": "\u0665\u0660\u0660\u0660"}, {}, {}),  # Arabic-Indic digits: a name, as Aurora's Python 2 str reads them
    ({"aurora": "http"}, {}, {}),  # an alias to a port the task does not have is left out
    ({}, {}, {}),
])
def test_resolve_portmap(portmap, ports, resolved):
    assert resolve_portmap(portmap, ports).ports == resolved


def test_a_name_that_ends_nowhere_is_listed_as_unmapped():
    resolved = resolve_portmap({"aurora": "http", "thrift": "service", "a": "b", "b": "thrift"}, {})
    assert resolved == ResolvedPorts(ports={}, unmapped=(("a", "service"), ("aurora", "http"),
                                                         ("b", "service"), ("thrift", "service")))
    assert resolved.warnings()[1].startswith("Task has unmapped port: aurora => http (no port of that name")


@pytest.mark.parametrize("portmap,cycle", [
    ({"a": "a"}, "a -> a"),
    ({"a": "b", "b": "a"}, "a -> b -> a"),
    ({"x": "a", "a": "b", "b": "a"}, "a -> b -> a"),
])
def test_a_portmap_cycle_is_an_error(portmap, cycle):
    with pytest.raises(PortmapError, match=f"the aliases {cycle} form a cycle"):
        resolve_portmap(portmap, {})
    with pytest.raises(PortmapError):
        requested_ports([], portmap)


@pytest.mark.parametrize("referenced,portmap,requested", [
    # no Announcer: what the processes reference
    (["http", "health"], {}, ["health", "http"]),
    # the default Announcer always asks for http, referenced or not
    ([], {"aurora": "http"}, ["http"]),
    # an alias: the processes ask for health, which is http
    (["health"], {"health": "http"}, ["http"]),
    # a static port is not requested
    (["http", "admin"], {"http": "8080"}, ["admin"]),
    # http_example: tcp, http, health referenced, alias -> http
    (["tcp", "http", "alias", "health"], {"alias": "http"}, ["health", "http", "tcp"]),
])
def test_requested_ports(referenced, portmap, requested):
    assert requested_ports(referenced, portmap) == requested


def _job(**kw):
    task = Task(processes=[Process(name="p", cmdline="true")], resources=Resources(cpu=1, ram=1, disk=1))
    return flatten(Job(cluster="c", role="r", environment="e", name="n", task=task, **kw)).get()


@pytest.mark.parametrize("kw,portmap", [
    ({}, {}),
    ({"announce": Announcer()}, {"aurora": "http"}),
    ({"announce": Announcer(primary_port="thrift")}, {"aurora": "thrift"}),
    ({"announce": Announcer(portmap={"health": "http"})}, {"health": "http"}),
    ({"announce": Announcer(portmap={})}, {}),
])
def test_job_portmap(kw, portmap):
    assert job_portmap(_job(**kw)) == portmap
