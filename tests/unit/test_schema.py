"""The schema: Aurora's names, types and defaults, the helpers, and `from_tree`."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.schema import (
    GB,
    KB,
    MB,
    SCHEMA_NAMESPACE,
    TB,
    Announcer,
    BatchUpdateStrategy,
    Constraint,
    Docker,
    DockerImage,
    Empty,
    HealthCheckConfig,
    HealthCheckerConfig,
    HttpHealthChecker,
    HttpLifecycleConfig,
    Job,
    LifecycleConfig,
    Logger,
    Mesos,
    Process,
    QueueUpdateStrategy,
    Resources,
    RotatePolicy,
    SequentialTask,
    Service,
    ShellHealthChecker,
    SimpleTask,
    Task,
    Tasks,
    TcpHealthChecker,
    UpdateConfig,
    order,
)
from config.typed_tree import from_tree
from tests.support.configs import job, plain, process, task


def test_units_are_binary_bytes():
    assert (KB, MB, GB, TB) == (1024, 1024**2, 1024**3, 1024**4)


def test_process_defaults():
    p = plain(Process(name="p", cmdline="c"))
    assert p == {"name": "p", "cmdline": "c", "max_failures": 1, "daemon": False,
                 "ephemeral": False, "min_duration": 5.0, "final": False}


def test_process_min_duration_accepts_fractions():
    assert Process(name="p", cmdline="c", min_duration=0.05).min_duration().get() == 0.05


def test_process_requires_name_and_cmdline():
    message = Process().check().message()
    assert "required" in message


def test_task_defaults_and_name_from_first_process():
    t = Task(processes=[Process(name="first", cmdline="a"), Process(name="second", cmdline="b")])
    d = plain(t)
    assert d["name"] == "first"
    assert d["constraints"] == []
    assert (d["max_failures"], d["max_concurrency"], d["finalization_wait"]) == (1, 0, 30.0)
    assert "resources" not in d and "user" not in d


def test_logger_and_rotate_policy_defaults():
    assert plain(Logger()) == {"destination": "file", "mode": "standard"}
    assert plain(RotatePolicy()) == {"log_size": 100 * MB, "backups": 5}


@pytest.mark.parametrize("field,value", [("destination", "syslog"), ("mode", "append")])
def test_logger_enums_reject_unknown_values(field, value):
    with pytest.raises(ValueError):
        Logger(**{field: value})


def test_resources_gpu_defaults_to_zero_and_the_rest_is_required():
    assert plain(Resources(cpu=1, ram=MB, disk=GB)) == {"cpu": 1.0, "ram": MB, "disk": GB, "gpu": 0}
    assert not Resources(cpu=1).check().ok()


def test_job_defaults():
    d = plain(Job(task=task(process("web")), cluster="c", role="r", environment="e"))
    assert d["name"] == "web"  # '{{task.name}}' -> '{{processes[0].name}}'
    assert d["instances"] == 1
    assert d["service"] is False
    assert d["max_task_failures"] == 1
    assert d["production"] is False and d["priority"] == 0 and d["enable_hooks"] is False
    assert d["cron_collision_policy"] == "KILL_EXISTING"
    assert d["metadata"] == []
    assert d["executor_config"] == {"name": "AuroraExecutor", "data": ""}
    assert d["update_config"]["watch_secs"] == 45 and d["update_config"]["rollback_on_failure"] is True
    assert d["health_check_config"] == plain(HealthCheckConfig())
    assert d["lifecycle"] == {"http": plain(HttpLifecycleConfig())}
    for unset in ("announce", "contact", "tier", "cron_schedule", "constraints", "container",
                  "sla_policy", "partition_policy", "task_links"):
        assert unset not in d


def test_job_requires_task_role_cluster_environment():
    message = Job().check().message()
    assert "required" in message
    for field in ("task", "role", "cluster", "environment"):
        assert Job.TYPEMAP[field].required, field


def test_service_is_a_job_with_the_service_bit():
    assert isinstance(Service, Job)
    svc = Service(task=task(), cluster="c", role="r", environment="e")
    assert isinstance(svc, Job) and svc.service().get() is True
    assert Job(task=task(), cluster="c", role="r", environment="e").service().get() is False


def test_health_check_config_defaults():
    assert plain(HealthCheckConfig()) == {
        "health_checker": {"http": {"endpoint": "/health", "expected_response": "ok",
                                    "expected_response_code": 0}},
        "initial_interval_secs": 15.0, "interval_secs": 10.0, "timeout_secs": 1.0,
        "max_consecutive_failures": 0, "min_consecutive_successes": 1,
    }


def test_http_health_checker_defaults():
    assert plain(HttpHealthChecker()) == {"endpoint": "/health", "expected_response": "ok",
                                          "expected_response_code": 0}


def test_shell_checker_requires_a_command_and_tcp_checker_has_no_fields():
    assert not ShellHealthChecker().check().ok()
    assert plain(HealthCheckerConfig(tcp=TcpHealthChecker())) == {"tcp": {}}


def test_http_lifecycle_defaults_and_disable():
    assert plain(HttpLifecycleConfig()) == {
        "port": "health", "graceful_shutdown_endpoint": "/quitquitquit",
        "shutdown_endpoint": "/abortabortabort", "graceful_shutdown_wait_secs": 5.0,
        "shutdown_wait_secs": 5.0,
    }
    assert plain(SCHEMA_NAMESPACE["DisableLifecycle"]) == {}
    assert plain(SCHEMA_NAMESPACE["DefaultLifecycleConfig"]) == {"http": plain(HttpLifecycleConfig())}
    assert plain(LifecycleConfig()) == {}


def test_announcer_portmap_defaults_to_the_primary_port():
    assert plain(Announcer()) == {"primary_port": "http", "portmap": {"aurora": "http"}}


def test_update_config_takes_any_strategy():
    assert plain(UpdateConfig(update_strategy=BatchUpdateStrategy(batch_size=3)))["update_strategy"] == \
        {"batch_size": 3, "autopause_after_batch": False}


def test_order_takes_processes_and_names_and_concatenates():
    a, b = process("a"), process("b")
    constraints = order(a, "b") + order(b, "c")
    assert [c.get()["order"] for c in constraints] == [("a", "b"), ("b", "c")]
    with pytest.raises(ValueError, match="order"):
        order(a, 3)


def test_sequential_task_orders_processes_in_list_order():
    t = SequentialTask(processes=[process("x"), process("y"), process("z")])
    assert plain(t)["constraints"] == [{"order": ["x", "y", "z"]}]


def test_sequential_task_refuses_existing_constraints():
    with pytest.raises(ValueError, match="existing constraints"):
        SequentialTask(processes=[process("x")], constraints=order("x"))


def test_simple_task_has_one_process_and_default_resources():
    d = plain(SimpleTask("hello", "echo hi"))
    assert d["name"] == "hello"
    assert [(p["name"], p["cmdline"]) for p in d["processes"]] == [("hello", "echo hi")]
    assert d["resources"] == {"cpu": 1.0, "ram": GB, "disk": GB, "gpu": 0}


def test_combine_keeps_process_order_dedupes_and_sums_resources():
    shared = process("shared")
    t1 = Task(name="one", processes=[process("b"), shared], resources=Resources(cpu=1, ram=2, disk=3))
    t2 = Task(name="two", processes=[shared, process("a")], resources=Resources(cpu=0.5, ram=1, disk=1))
    d = plain(Tasks.combine(t1, t2))
    assert [p["name"] for p in d["processes"]] == ["b", "shared", "a"]
    assert d["resources"] == {"cpu": 1.5, "ram": 3, "disk": 4, "gpu": 0}
    assert d["name"] == "two"  # Aurora takes the other fields from the last task


def test_concat_orders_every_process_of_one_task_before_the_next():
    t1 = Task(processes=[process("a1"), process("a2")], resources=Resources(cpu=1, ram=5, disk=1))
    t2 = Task(processes=[process("b1")], resources=Resources(cpu=2, ram=1, disk=1))
    d = plain(Tasks.concat(t1, t2))
    assert [p["name"] for p in d["processes"]] == ["a1", "a2", "b1"]
    assert d["constraints"] == [{"order": ["a1", "b1"]}, {"order": ["a2", "b1"]}]
    assert d["resources"] == {"cpu": 2.0, "ram": 5, "disk": 1, "gpu": 0}


def test_schema_namespace_exports_schema_helpers_and_pystachio_names():
    for name in ("Process", "Task", "Job", "Service", "MesosJob", "SequentialTask", "SimpleTask",
                 "Tasks", "Units", "order", "Resources", "Logger", "RotatePolicy", "Constraint",
                 "HealthCheckConfig", "HealthCheckerConfig", "HttpHealthChecker",
                 "ShellHealthChecker", "TcpHealthChecker", "LifecycleConfig", "HttpLifecycleConfig",
                 "DisableLifecycle", "DefaultLifecycleConfig", "Announcer", "UpdateConfig",
                 "ThermosContext", "MesosContext", "Docker", "Mesos", "Container",
                 "BYTES", "KB", "MB", "GB", "TB",
                 "Struct", "String", "Integer", "Float", "Boolean", "Default", "Required", "List",
                 "Map", "Enum", "Choice", "Empty", "Ref"):
        assert name in SCHEMA_NAMESPACE, name


# The names Aurora 0.22's client puts into a config's namespace (`from pystachio import *`,
# then `from apache.aurora.config.schema.base import *`), listed from that client.
AURORA_NAMESPACE = {
    "AURORA_EXECUTOR_NAME", "Announcer", "AppcImage", "BYTES", "BatchUpdateStrategy", "Boolean", "Choice",
    "Constraint", "Container", "CoordinatorSlaPolicy", "CountSlaPolicy", "Default", "DefaultHealthChecker",
    "DefaultLifecycleConfig", "DisableLifecycle", "Docker", "DockerImage", "Empty", "Enum", "Environment",
    "ExecutorConfig", "Float", "GB", "HealthCheckConfig", "HealthCheckerConfig", "HttpHealthChecker",
    "HttpLifecycleConfig", "Integer", "Job", "KB", "LifecycleConfig", "List", "Logger", "LoggerDestination",
    "LoggerMode", "MB", "Map", "Mesos", "MesosContext", "MesosJob", "MesosTaskInstance", "Metadata", "Mode",
    "MustacheParser", "Namable", "Options", "Parameter", "PartitionPolicy", "PercentageSlaPolicy", "Process",
    "Processes", "QueueUpdateStrategy", "Ref", "Required", "Resources", "RotatePolicy", "SequentialTask",
    "Service", "ShellHealthChecker", "SimpleTask", "String", "Struct", "TB", "Task", "Tasks", "ThermosContext",
    "Type", "TypeCheck", "TypeFactory", "Units", "UpdateConfig", "VariableBatchUpdateStrategy", "Volume",
    "base", "basic", "choice", "combine_tasks", "composite", "concat_tasks", "container", "java_options",
    "naming", "order", "parsing", "python_options", "sys", "typing",
}


def test_the_namespace_is_aurora_s_plus_stoker_s_two_additions():
    assert set(SCHEMA_NAMESPACE) - AURORA_NAMESPACE == {"TcpHealthChecker", "VolumeMode"}
    assert AURORA_NAMESPACE - set(SCHEMA_NAMESPACE) == set()
    assert SCHEMA_NAMESPACE["Mode"] is SCHEMA_NAMESPACE["VolumeMode"]
    assert SCHEMA_NAMESPACE["AURORA_EXECUTOR_NAME"] == "AuroraExecutor"
    assert plain(SCHEMA_NAMESPACE["DefaultHealthChecker"]) == {"http": plain(HttpHealthChecker())}


def test_a_volume_takes_aurora_s_mode():
    mode = SCHEMA_NAMESPACE["Mode"]
    volume = SCHEMA_NAMESPACE["Volume"](container_path="/c", host_path="/h", mode=mode("RO"))
    assert plain(volume) == {"container_path": "/c", "host_path": "/h", "mode": "RO"}


@pytest.mark.parametrize("render, args, kw, expected", [
    ("java_options", ("a", "b"), {}, "-a -b"),
    ("java_options", ({"a": 23, "boo": "foo"},), {}, "-a 23 -boo foo"),
    ("python_options", ("a", "boo"), {}, "-a --boo"),
    ("python_options", ({"a": 23},), {"boo": "foo"}, "-a 23 --boo foo"),
])
def test_options_render_flags_as_thermos_does(render, args, kw, expected):
    assert SCHEMA_NAMESPACE[render](*args, **kw) == expected


def test_combine_and_concat_finalization_waits_are_the_max_and_the_sum():
    t1 = Task(processes=[process("a")], finalization_wait=10)
    t2 = Task(processes=[process("b")], finalization_wait=25)
    assert plain(Tasks.combine(t1, t2))["finalization_wait"] == 25
    assert plain(Tasks.concat(t1, t2))["finalization_wait"] == 35
    assert plain(SCHEMA_NAMESPACE["Processes"].order("a", "b")[0]) == {"order": ["a", "b"]}


# ---- from_tree ----


def test_from_tree_round_trips_a_job_with_choices():
    original = job(process("web"), container=Mesos(image=DockerImage(name="debian", tag="slim")),
                   update_config=UpdateConfig(update_strategy=QueueUpdateStrategy(batch_size=2)))
    rebuilt = from_tree(Job, plain(original))
    assert plain(rebuilt) == plain(original)
    docker = job(container=Docker(image="python:3"))
    assert plain(from_tree(Job, plain(docker)))["container"] == {"image": "python:3", "parameters": []}


@pytest.mark.parametrize("tree,expected", [
    ({"task": {"processes": [{"name": "a", "cmdline": "x", "max_failures": "x"}]}},
     "job.task.processes[0].max_failures = 'x' is not an integer"),
    ({"task": {"processes": [{"name": "a"}]}}, "job.task.processes[0].cmdline is required but missing"),
    ({"task": {"processes": [], "bogus": 1}}, "job.task: unknown field 'bogus'"),
    ({"health_check_config": {"health_checker": {"grpc": {}}}},
     "unknown health checker kind 'grpc' (HealthCheckerConfig has http, shell, tcp)"),
    ({"health_check_config": {"interval_secs": float("inf")}}, "interval_secs = inf is not a finite number"),
    ({"health_check_config": {"interval_secs": "{{x}}"}}, "templates are not allowed in numeric fields"),
    ({"max_task_failures": "1e5"}, "job.max_task_failures = '1e5' is not an integer"),
    ({"max_task_failures": float("nan")}, "job.max_task_failures = nan is not a finite number"),
    ({"service": "maybe"}, "job.service = 'maybe' is not a boolean"),
    ({"task": {"processes": {"a": 1}}}, "job.task.processes must be a list"),
    ({"task": "x"}, "job.task must be a Task"),
    ({"task": {"processes": [{"name": "a", "cmdline": "x", "logger": {"mode": "loud"}}]}},
     "job.task.processes[0].logger.mode = 'loud' is not one of standard, rotate"),
    ({"container": {"image": [1]}}, "job.container = {'image': [1]} is none of Container, Docker, Mesos"),
    ({}, "job.role is required but missing"),
])
def test_from_tree_names_the_field_and_value(tree, expected):
    with pytest.raises(ConfigError) as info:
        from_tree(Job, tree)
    assert expected in str(info.value)


@pytest.mark.parametrize("value", [True, False, 1.5, -2.7, "7", " 7 ", "1" * 400, 10 ** 400])
def test_an_integer_field_takes_what_aurora_s_pystachio_integer_takes_as_it_does(value):
    """Aurora's client reads a config's Integer with pystachio, which sends `int(value)`: True
    is 1 and 5.5 is 5 there, and 400 digits of text an integer. They were refused ("is not an
    integer"; the text "is not a finite number"), where Aurora's client runs the job."""
    from pystachio import Integer

    assert Integer(value).check().ok()
    tree = {**plain(job(process("web"))), "max_task_failures": value}
    assert plain(from_tree(Job, tree))["max_task_failures"] == Integer.coerce(value)


@pytest.mark.parametrize("value", ["1e5", "2.0", "x", float("inf"), float("nan")])
def test_an_integer_field_refuses_what_aurora_s_pystachio_integer_refuses(value):
    from pystachio import Integer

    with pytest.raises((Integer.CoercionError, OverflowError)):  # inf: OverflowError, uncaught there
        Integer.coerce(value)
    with pytest.raises(ConfigError, match="job.max_task_failures = .* is not"):
        from_tree(Job, {**plain(job(process("web"))), "max_task_failures": value})


def test_from_tree_lists_every_problem():
    with pytest.raises(ConfigError) as info:
        from_tree(Job, {"task": {"processes": [{"name": "a", "cmdline": "x", "daemon": 3}]}})
    problems = info.value.problems
    assert any("daemon = 3" in p for p in problems)
    assert {p for p in problems if "required" in p} == {
        "job.cluster is required but missing", "job.environment is required but missing",
        "job.role is required but missing"}


def test_from_tree_treats_null_as_not_given():
    d = plain(from_tree(Job, {**plain(job()), "max_task_failures": None}))
    assert d["max_task_failures"] == 1


def test_schema_and_templates_are_pure():
    root = Path(__file__).resolve().parents[2]
    forbidden = {"requests", "psutil", "subprocess", "socket", "threading", "os", "time", "logging"}
    modules = [str(p.relative_to(root)) for p in sorted((root / "config/schema").glob("*.py"))]
    modules += ["config/typed_tree.py", "config/templates.py", "config/bind.py", "config/errors.py"]
    assert len(modules) == 9
    for module in modules:
        tree = ast.parse((root / module).read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
        assert not names & forbidden, (module, names & forbidden)


def test_empty_is_pystachios_sentinel():
    assert Process(name="p", cmdline="c").logger() is Empty
    assert isinstance(Constraint(order=["a"]), Constraint)
