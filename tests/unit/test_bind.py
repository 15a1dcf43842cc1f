"""Binding a job into a JobSpec: every namespace expanded, process and task fields mapped, the
health check chosen, and what bind could not bind named (unbound references, missing or
out-of-range ports, loops)."""
from __future__ import annotations

import pytest

from config import spec
from config.bind import bind
from config.errors import BindError, ConfigError
from config.schema import (
    DisableLifecycle,
    HealthCheckConfig,
    HealthCheckerConfig,
    HttpHealthChecker,
    HttpLifecycleConfig,
    LifecycleConfig,
    Logger,
    RotatePolicy,
    ShellHealthChecker,
)
from tests.support.configs import BIND, HEALTH_PORT, SHELL, TCP, bound, job, process

# ---- bind ----


def test_bind_expands_every_namespace_into_the_job_spec():
    j = job(process("web", "serve --port {{thermos.ports[http]}} --id {{thermos.task_id}} "
                           "--user {{thermos.user}} --shard {{mesos.instance}} --host {{mesos.hostname}} "
                           "--as {{role}}/{{environment}}/{{cluster}}"),
            name="svc", service=True, max_task_failures=-1)
    s = bound(j, http=31000, other=31001)
    assert s.task.processes[0].cmdline == ("serve --port 31000 --id task-7 --user alice --shard 3 "
                                           "--host host.example --as r/e/c")
    assert (s.role, s.environment, s.cluster, s.name, s.instance, s.task_id) == ("r", "e", "c", "svc", 3, "task-7")
    assert s.key == "c/r/e/svc" and s.label == "svc.3"
    assert s.service is True and s.max_task_failures == -1
    assert s.ports == {"http": 31000, "other": 31001}


def test_bind_maps_process_and_task_fields():
    j = job(process("a", "x", max_failures=3, daemon=True, ephemeral=True, min_duration=0.05,
                    logger=Logger(destination="both", mode="rotate", rotate=RotatePolicy(log_size=2048))),
            process("b", "y", final=True),
            process("c", "z"),
            task_fields={"constraints": [{"order": ["c", "a"]}], "max_failures": 2, "max_concurrency": 4,
                         "finalization_wait": 0.5, "name": "tsk"})
    s = bound(j)
    assert s.task == spec.TaskSpec(
        name="tsk",
        processes=(
            spec.ProcessSpec(name="a", cmdline="x", max_failures=3, daemon=True, ephemeral=True,
                             min_duration_secs=0.05,
                             logger=spec.LoggerSpec(spec.LogDestination.BOTH, spec.LogMode.ROTATE, 2048, 5)),
            spec.ProcessSpec(name="b", cmdline="y", final=True, logger_unset=True),  # no logger: an
            spec.ProcessSpec(name="c", cmdline="z", logger_unset=True),  # executor's defaults apply
        ),
        constraints=(("c", "a"),), max_failures=2, max_concurrency=4, finalization_wait_secs=0.5,
        disk_bytes=1024 * 1024,  # Resources.disk: the disk-limit check's limit
        cpu=0.1, ram_bytes=1024 * 1024)  # shown against the task's use (stoker status, the observer)
    assert isinstance(s.task.processes[1].min_duration_secs, float)
    assert isinstance(s.task.cpu, float)


def test_bind_uses_logger_defaults_when_unset():
    s = bound(job(process("a", "x", logger=Logger(mode="rotate"))))
    assert s.task.processes[0].logger == spec.LoggerSpec(mode=spec.LogMode.ROTATE)


@pytest.mark.parametrize("checker,ports,kind,port", [
    (None, {}, spec.CheckKind.NONE, None),
    (None, {"health": 9000}, spec.CheckKind.HTTP, 9000),
    (HealthCheckerConfig(http=HttpHealthChecker(endpoint="/ready")), {}, spec.CheckKind.NONE, None),
    (HealthCheckerConfig(), {"health": 9000}, spec.CheckKind.HTTP, 9000),
    (SHELL, {"health": 9000}, spec.CheckKind.SHELL, None),
    (HealthCheckerConfig(shell=ShellHealthChecker(shell_command="true"), http=HttpHealthChecker()),
     {"health": 9000}, spec.CheckKind.SHELL, None),
    (TCP, {"health": 9000}, spec.CheckKind.TCP, 9000),
    (TCP, {}, spec.CheckKind.NONE, None),
])
def test_health_kind_selection(checker, ports, kind, port):
    hc = HealthCheckConfig() if checker is None else HealthCheckConfig(health_checker=checker)
    procs = [HEALTH_PORT] if "health" in ports else [process("web", "sleep 1")]
    s = bound(job(*procs, health_check_config=hc), **ports)
    assert (s.health.kind, s.health.port) == (kind, port)


def test_health_spec_fields():
    hc = HealthCheckConfig(initial_interval_secs=0.5, interval_secs=0.1, timeout_secs=0.2,
                           max_consecutive_failures=2, min_consecutive_successes=3,
                           health_checker=HealthCheckerConfig(http=HttpHealthChecker(
                               endpoint="/ready", expected_response="", expected_response_code=204)))
    s = bound(job(HEALTH_PORT, health_check_config=hc), health=9000)
    assert s.health == spec.HealthSpec(kind=spec.CheckKind.HTTP, initial_interval_secs=0.5, interval_secs=0.1,
                                       timeout_secs=0.2, max_consecutive_failures=2, min_consecutive_successes=3,
                                       port=9000, endpoint="/ready", expected_response="",
                                       expected_response_code=204)


def test_shell_command_is_expanded():
    s = bound(job(HEALTH_PORT, health_check_config=HealthCheckConfig(health_checker=SHELL)), health=9000)
    assert s.health.shell_command == "probe 9000 task-7"


def test_lifecycle_spec():
    assert bound(job(process("a", "x"))).lifecycle is None  # no `health` port
    s = bound(job(HEALTH_PORT), health=9000)
    assert s.lifecycle == spec.LifecycleSpec(port=9000)
    assert bound(job(HEALTH_PORT, lifecycle=DisableLifecycle), health=9000).lifecycle is None
    custom = job(process("a", "x"), lifecycle=LifecycleConfig(http=HttpLifecycleConfig(
        port="admin", graceful_shutdown_wait_secs=0.5, shutdown_endpoint="/die")))
    assert bound(custom, admin=7000).lifecycle == spec.LifecycleSpec(
        port=7000, shutdown_endpoint="/die", graceful_shutdown_wait_secs=0.5)


def test_unbound_references_are_all_named():
    j = job(process("a", "run {{foo.bar}} {{thermos.ports[http]}}"), process("b", "{{mesos.nothing}}"))
    with pytest.raises(BindError) as info:
        bound(j, http=1)
    assert str(info.value).endswith("unbound template references: {{foo.bar}}, {{mesos.nothing}}")
    assert info.value.unbound == ("{{foo.bar}}", "{{mesos.nothing}}")


def test_unbound_reference_in_the_health_command_is_named():
    hc = HealthCheckConfig(health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command="x {{nope}}")))
    with pytest.raises(BindError, match=r"unbound template references: \{\{nope\}\}"):
        bound(job(process("a", "x"), health_check_config=hc))


def test_unbound_references_in_fields_the_task_does_not_use_are_ignored():
    s = bound(job(process("a", "x"), contact="{{owner}}@example.com"))
    assert s.task.processes[0].cmdline == "x"


def test_missing_ports_are_named():
    j = job(process("a", "run {{thermos.ports[http]}} {{thermos.ports[admin]}} {{thermos.ports[db]}}"))
    with pytest.raises(BindError) as info:
        bound(j, http=1)
    message = str(info.value)
    assert "missing ports: admin, db (assigned: http)" in message
    assert info.value.missing_ports == ("admin", "db")
    assert "{{thermos.ports[admin]}}" in message


def _ref(name: str) -> str:
    return "{{" + name + "}}"


def _refs(count: int, sep: str = " ") -> str:
    return sep.join(_ref(f"u{i:02d}") for i in range(count))


@pytest.mark.parametrize("cmdline, ports, message", [
    # a missing port is also an unbound reference, and both are named
    ("run {{thermos.ports[http]}}", {},
     "job c/r/e/a: missing ports: http (assigned: none); unbound template references: {{thermos.ports[http]}}"),
    ("run {{thermos.ports[http]}} {{thermos.ports[db]}}", {"x": 1, "admin": 2},
     "job c/r/e/a: missing ports: db, http (assigned: admin, x); "
     "unbound template references: {{thermos.ports[db]}}, {{thermos.ports[http]}}"),
    ("run {{nope}}", {"http": 1}, "job c/r/e/a: unbound template references: {{nope}}"),
    # at most 20 references are named, each cut to 80 characters
    (_refs(20), {}, "job c/r/e/a: unbound template references: " + _refs(20, ", ")),
    (_refs(21), {}, "job c/r/e/a: unbound template references: "
     + _refs(20, ", ") + " and 1 more"),
    (_refs(25), {}, "job c/r/e/a: unbound template references: "
     + _refs(20, ", ") + " and 5 more"),
    ("{{" + "x" * 76 + "}}", {}, "job c/r/e/a: unbound template references: {{" + "x" * 76 + "}}"),
    ("{{" + "x" * 77 + "}}", {}, "job c/r/e/a: unbound template references: {{" + "x" * 75 + "..."),
])
def test_what_bind_could_not_bind_is_named(cmdline, ports, message):
    with pytest.raises(BindError) as info:
        bind(job(process("a", cmdline)), ports=ports, **BIND)
    assert str(info.value) == message


def test_long_lists_in_a_bind_error_are_cut():
    names = [f"p{i:03d}" for i in range(100)]
    cmdline = " ".join(_ref(f"thermos.ports[{n}]") for n in names)
    have = {f"h{i:03d}": 1000 + i for i in range(100)}
    with pytest.raises(BindError) as info:
        bind(job(process("a", cmdline), name="n" * 250), ports=have, **BIND)
    listed, assigned = ", ".join(names), ", ".join(sorted(have))
    refs = ", ".join(_ref(f"thermos.ports[{n}]") for n in names[:20])
    assert str(info.value) == (f"job c/r/e/{'n' * 194}: missing ports: {listed[:400]} (assigned: {assigned[:400]}); "
                               f"unbound template references: {refs} and 80 more")
    assert info.value.missing_ports == tuple(names)


def test_a_bound_value_that_loops_is_a_config_error_naming_the_job_and_the_field():
    with pytest.raises(ConfigError) as info:
        bind(job(process("a", "run {{mesos.hostname}}")), ports={}, instance=0, task_id="t",
             hostname="{{mesos.hostname}}{{mesos.hostname}}", user="u")
    assert not isinstance(info.value, BindError)
    assert info.value.problems == (str(info.value).removeprefix("job c/r/e/a: "),)
    assert str(info.value) == ("job c/r/e/a: job.task.processes[0].cmdline = 'run {{mesos.hostname}}' needs "
                               "more than 5200 template steps to expand (its references repeat or lead to "
                               "each other too often: a long chain of bound names, `--bind` flags among them)")


@pytest.mark.parametrize("ports, shown", [
    ({"http": 65536}, "http=65536"), ({"http": 0}, "http=0"), ({"http": -1}, "http=-1"),
    ({"http": 70000}, "http=70000"), ({"http": "80"}, "http='80'"), ({"http": True}, "http=True"),
    ({"http": 1.5}, "http=1.5"), ({"http": 80, "admin": 0, "db": 65536}, "admin=0, db=65536"),
])
def test_port_numbers_out_of_range_are_refused_naming_the_port(ports, shown):
    with pytest.raises(ConfigError) as info:
        bound(job(process("a", "{{thermos.ports[http]}}")), **ports)
    assert str(info.value) == f"invalid ports (each must be a name and a number in 1..65535): {shown}"


@pytest.mark.parametrize("number", [1, 65535])
def test_the_first_and_the_last_port_numbers_are_accepted(number):
    assert bound(job(process("a", "serve {{thermos.ports[http]}}")), http=number).task.processes[0].cmdline \
        == f"serve {number}"


def test_a_port_name_must_be_a_string():
    with pytest.raises(ConfigError, match=r"^invalid ports \(each must be a name and a number in 1..65535\): 7=80$"):
        bind(job(process("a", "x")), ports={7: 80}, **BIND)  # type: ignore[dict-item]


def test_a_task_of_500_ports_is_bound_without_reading_the_ports_map_entry_by_entry(monkeypatch):
    """pystachio's Map looks a key up by reading every entry: each `{{thermos.ports[NAME]}}`
    read all of them: a job of 3,000 took minutes to bind (`stoker run` of it printed nothing for
    a minute; an executor's task waited as long). The lookups are counted, not timed."""
    from pystachio.container import MapContainer

    lookups = []
    original = MapContainer.find

    def counted(self, ref):
        lookups.append(ref)
        return original(self, ref)

    monkeypatch.setattr(MapContainer, "find", counted)
    ports = {f"p{i}": 20_000 + i for i in range(500)}
    j = job(process("a", " ".join(_ref(f"thermos.ports[{name}]") for name in ports)))
    spec_ = bind(j, instance=0, ports=ports, task_id="t", hostname="h", user="u")
    assert spec_.task.processes[0].cmdline == " ".join(map(str, ports.values()))
    assert lookups == []
