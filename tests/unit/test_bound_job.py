"""What bind carries through, field by field (no default may replace a value), and what
binding checks and gives once the job is bound (Aurora payloads, plain values, endpoints,
process names, health checks that cannot run, what is bound at load and at start)."""
from __future__ import annotations

import json

import pytest

from config import loader, spec, templates
from config.bind import bind, bound_job
from config.errors import BindError, ConfigError
from config.portmap import port_names, port_names_of_tree
from config.schema import (
    Announcer,
    Constraint,
    Docker,
    HealthCheckConfig,
    HealthCheckerConfig,
    HttpHealthChecker,
    HttpLifecycleConfig,
    LifecycleConfig,
    Logger,
    Parameter,
    RotatePolicy,
    ShellHealthChecker,
    UpdateConfig,
    VariableBatchUpdateStrategy,
)
from config.templates import flatten
from tests.support.configs import BIND, HEALTH_PORT, TCP, bound, job, process

# ---- what bind carries through, field by field (no default may replace a value) ----


def test_bind_carries_non_default_logger_and_lifecycle_fields():
    j = job(process("a", "serve {{thermos.ports[health]}}",
                    logger=Logger(destination="console", mode="rotate",
                                  rotate=RotatePolicy(log_size=4096, backups=3))),
            lifecycle=LifecycleConfig(http=HttpLifecycleConfig(
                graceful_shutdown_endpoint="/bye", shutdown_endpoint="/die",
                graceful_shutdown_wait_secs=1.5, shutdown_wait_secs=2.5)))
    s = bound(j, health=9000)
    assert s.task.processes[0].logger == spec.LoggerSpec(spec.LogDestination.CONSOLE, spec.LogMode.ROTATE,
                                                         log_size_bytes=4096, backups=3)
    assert s.lifecycle == spec.LifecycleSpec(port=9000, graceful_shutdown_endpoint="/bye",
                                             shutdown_endpoint="/die", graceful_shutdown_wait_secs=1.5,
                                             shutdown_wait_secs=2.5)
    assert isinstance(s.lifecycle.shutdown_wait_secs, float)


def test_a_rotate_policy_left_out_gives_the_spec_defaults():
    expected = spec.LoggerSpec(spec.LogDestination.BOTH, spec.LogMode.ROTATE,
                               log_size_bytes=100 * 1024 * 1024, backups=5)
    s = bound(job(process("a", "x", logger=Logger(mode="rotate", destination="both"))))
    assert s.task.processes[0].logger == expected
    s = bound(job(process("a", "x", logger=Logger(mode="rotate", destination="both", rotate=RotatePolicy()))))
    assert s.task.processes[0].logger == expected  # RotatePolicy's defaults are the same numbers


def test_a_constraint_without_order_binds_to_an_empty_order():
    s = bound(job(process("a", "x"), process("b", "y"),
                  task_fields={"constraints": [Constraint(), Constraint(order=["a", "b"])]}))
    assert s.task.constraints == ((), ("a", "b"))


def test_bind_expands_map_and_choice_fields():
    # Map (announce.portmap, job constraints) and Choice (container, update_strategy) values
    # are expanded like any other; bind reads none of them, so flatten's result shows it.
    j = job(process("a", "x"), name="svc",
            announce=Announcer(primary_port="{{name}}-port", portmap={"{{role}}": "{{primary_port}}"}),
            container=Docker(image="img:{{environment}}", parameters=[Parameter(name="{{role}}", value="v")]),
            update_config=UpdateConfig(update_strategy=VariableBatchUpdateStrategy(batch_sizes=[1, 2])),
            constraints={"host": "{{cluster}}"})
    flat, _ = templates.expand(flatten(j))
    assert flat["announce"] == {"primary_port": "svc-port", "portmap": {"r": "svc-port"}}
    assert flat["container"] == {"image": "img:e", "parameters": [{"name": "r", "value": "v"}]}
    assert flat["update_config"]["update_strategy"] == {"batch_sizes": [1, 2], "autopause_after_batch": False}
    assert flat["constraints"] == {"host": "c"}
    assert bound(j).name == "svc"


def test_a_cycle_inside_a_map_or_a_choice_is_found():
    j = job(process("a", "x"), container=Docker(image="{{image}}:1"),
            announce=Announcer(portmap={"a": "{{portmap}}"}))
    with pytest.raises(ConfigError) as info:
        flatten(j)
    assert info.value.problems == (
        "job.announce.portmap.a = '{{portmap}}' refers to itself (a template reference cycle)",
        "job.container.image = '{{image}}:1' refers to itself (a template reference cycle)")


def test_bind_does_not_change_the_job():
    j = job(process("a", "run {{thermos.ports[http]}} {{mesos.instance}}"))
    before = j.json_dumps()
    bound(j, http=5)
    assert j.json_dumps() == before
    assert json.loads(j.json_dumps())["task"]["processes"][0]["cmdline"] == "run {{thermos.ports[http]}} {{mesos.instance}}"


def test_bind_accepts_angle_refs_in_an_unloaded_job():
    s = bound(job(process("a", "run <<thermos.ports[http]>>")), http=8080)
    assert s.task.processes[0].cmdline == "run 8080"


@pytest.mark.parametrize("tree,holds", [
    ({"a": "sleep 1", "b": [1, "x", {"c": True}]}, False),
    ({"a": ["x", {"b": "{{thermos.ports[http]}}"}]}, True),
    ({"a": "run <<thermos.task_id>>"}, True),
    ({"a": "cat <<EOF"}, True),  # perhaps a heredoc, perhaps not: bind flattens to see
    ("{{&escaped}}", True),
])
def test_holds_templates_looks_in_every_string(tree, holds):
    assert templates.holds_templates(tree) is holds


def test_a_job_without_templates_binds_as_its_flattening_does():
    """bind skips flattening a job that holds no `{{` or `<<` (loaded jobs of plain commands,
    the common case): the spec and the bound tree are the same either way."""
    plain = loader.prepare_job(job(process("a", "sleep 5"), process("b", "echo hi")), "t")
    assert not templates.holds_templates(templates.raw(plain))
    direct = bound_job(plain, ports={}, **BIND)
    assert direct == bound_job(flatten(plain), ports={}, **BIND)
    assert [p.name for p in direct.spec.task.processes] == ["a", "b"]


# ---- what binding checks and gives once the job is bound ----

ANGLED = process("web", "serve <<thermos.ports[http]>> {{thermos.ports[admin]}} <<role>>")


def test_an_aurora_payload_keeps_its_angle_brackets_and_needs_no_port_for_them():
    # Aurora's own payload never treated <<ref>> as a template (angle_refs=False); a .aurora
    # file or a task document does.
    j = job(ANGLED)
    assert port_names(j) == ["admin", "http"] and port_names(j, angle_refs=False) == ["admin"]
    tree = templates.expand(j)[0]
    assert port_names_of_tree(tree) == ["admin", "http"]
    assert port_names_of_tree(tree, angle_refs=False) == ["admin"]
    payload = bind(j, ports={"admin": 9}, angle_refs=False, **BIND)
    assert payload.task.processes[0].cmdline == "serve <<thermos.ports[http]>> 9 <<role>>"
    assert bound(j, admin=9, http=8).task.processes[0].cmdline == "serve 8 9 r"
    with pytest.raises(BindError, match=r"missing ports: http \(assigned: admin\)"):
        bound(j, admin=9)


def test_the_bound_job_is_given_as_plain_values_too():
    both = bound_job(job(ANGLED), ports={"admin": 9, "http": 8}, **BIND)
    assert both.tree["task"]["processes"][0]["cmdline"] == "serve 8 9 r"
    assert both.spec == bound(job(ANGLED), admin=9, http=8)


@pytest.mark.parametrize("fields, hostname, problems", [
    (dict(health_check_config=HealthCheckConfig(health_checker=HealthCheckerConfig(
        http=HttpHealthChecker(endpoint="{{mesos.hostname}}")))), "ready",
     ["job.health_check_config.health_checker.http.endpoint = 'ready' must be an absolute path starting "
      "with one '/', such as '/health'"]),
    (dict(lifecycle=LifecycleConfig(http=HttpLifecycleConfig(graceful_shutdown_endpoint="/{{mesos.hostname}}",
                                                             shutdown_endpoint="{{mesos.hostname}}"))), "/x",
     ["job.lifecycle.http.graceful_shutdown_endpoint = '//x' must be an absolute path starting with one '/', "
      "such as '/health'"]),  # the shutdown endpoint, '/x', is fine
])
def test_templated_endpoints_are_checked_once_bound(fields, hostname, problems):
    j = job(HEALTH_PORT, **fields)
    with pytest.raises(ConfigError) as info:
        bind(j, ports={"health": 9000}, instance=0, task_id="t", hostname=hostname, user="u")
    assert info.value.problems == tuple(problems)
    assert str(info.value).startswith("job c/r/e/web (bound): ")


def test_a_process_name_is_checked_again_once_its_templates_are_bound():
    j = job(process("p-{{mesos.hostname}}", "x"), name="j")
    assert bind(j, ports={}, instance=0, task_id="t", hostname="h", user="u").task.processes[0].name == "p-h"
    with pytest.raises(ConfigError) as info:
        bind(j, ports={}, instance=0, task_id="t", hostname="a/b", user="u")
    (problem,) = info.value.problems
    assert problem.startswith("job.task.processes[0].name = 'p-a/b' is not a safe process name")
    assert str(info.value) == f"job c/r/e/j (bound): {problem}"


@pytest.mark.parametrize("name", ["{{}}", "web-{{}}"])
def test_what_still_looks_like_a_template_once_bound_is_part_of_the_name(name):
    # `{{}}` is no reference: it stays as written when the job is bound, and a bound name
    # with braces is no directory name (the fault suite's generated documents found it).
    j = job(process(name, "x"), name="j")
    with pytest.raises(ConfigError) as info:
        bind(j, ports={}, instance=0, task_id="t", hostname="h", user="u")
    (problem,) = info.value.problems
    assert "is not a safe process name" in problem
    assert str(info.value).startswith("job c/r/e/j (bound): job.task.processes[0].name = ")


NOT_CHECKED = ("job.health_check_config configures {} health check, but the task has no port named 'health', "
               "so it is not health-checked: reference {{{{thermos.ports[health]}}}} in a process, or alias "
               "the port the service answers on, e.g. announce = Announcer(portmap={{'health': 'http'}})")


@pytest.mark.parametrize("hc, ports, warnings", [
    (HealthCheckConfig(), {}, ()),  # nothing asked for: nothing to say
    (HealthCheckConfig(interval_secs=2), {}, (NOT_CHECKED.format("an HTTP"),)),  # HTTP by default
    (HealthCheckConfig(health_checker=HealthCheckerConfig(http=HttpHealthChecker(endpoint="/ready"))), {},
     (NOT_CHECKED.format("an HTTP"),)),
    (HealthCheckConfig(health_checker=TCP), {}, (NOT_CHECKED.format("a TCP"),)),
    (HealthCheckConfig(interval_secs=2), {"health": 9000}, ()),  # it runs
    (HealthCheckConfig(health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command="true"))),
     {}, ()),  # a shell check needs no port
], ids=["default", "explicit-http-default", "explicit-http", "tcp", "http-with-port", "shell"])
def test_a_health_check_asked_for_that_cannot_run_is_a_warning(hc, ports, warnings):
    procs = [HEALTH_PORT] if ports else [process("web", "sleep 1")]
    assert bound(job(*procs, health_check_config=hc), **ports).warnings == warnings


@pytest.mark.parametrize("ref, runtime", [
    ("thermos.ports[http]", True), ("thermos.task_id", True), ("mesos.instance", True),
    ("mesos.hostname", True), ("mesos.nothing", False), ("mesos.instances", False),
    ("thermosx.y", False), ("role", False),
])
def test_only_thermos_and_the_mesos_instance_and_hostname_are_bound_when_the_task_starts(ref, runtime):
    assert templates.is_runtime_ref(ref) is runtime


def test_what_must_be_bound_at_load_is_every_other_reference_once_in_the_order_found():
    j = job(process("a", "{{thermos.ports[http]}} {{thermos.task_id}} {{mesos.instance}} {{mesos.hostname}} "
                         "{{mesos.nothing}} {{x}} {{x}}"), contact="{{y}}")
    assert templates.load_time_unbound(j) == ["{{y}}", "{{mesos.nothing}}", "{{x}}"]


def test_the_announcement_is_carried_into_the_job_spec_when_the_job_has_one():
    from config.announcer import AnnouncerSpec

    s = bound(job(process("web", "serve {{thermos.ports[http]}}"),
                  announce=Announcer(primary_port="http", portmap={"health": "http"})), http=31000)
    assert s.announce == AnnouncerSpec(primary_port="http", portmap={"health": "http"})
    assert bound(job(process("web", "x"))).announce is None
