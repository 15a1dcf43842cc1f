"""The job schema: pystachio Structs with Aurora's names, types and defaults.

Owns every struct a `.aurora` file may name (Thermos' Process/Task/Logger/..., Aurora's
Job/Service/HealthCheckConfig/LifecycleConfig/...), the helpers `order`, `SequentialTask`,
`SimpleTask`, `Tasks`, `Units`, the size units, `SCHEMA_NAMESPACE` (everything a config file
sees without importing), and `from_tree`, which builds a struct from plain JSON-like values
and says which field is wrong. References: docs/aurora.md §1, §7.

Differences from Aurora, all widening: `Process.min_duration`, `Task.finalization_wait` and
the lifecycle waits are Float (Aurora: Integer) so tests can use fractions of a second;
`HealthCheckerConfig.tcp` is a Stoker extension (TCP connect to the `health` port).

Never does I/O, never logs, never reads the environment.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from functools import reduce
from typing import Any

import pystachio
from pystachio import (
    Boolean,
    Choice,
    Default,
    Empty,
    Enum,
    Float,
    Integer,
    List,
    Map,
    Ref,
    Required,
    String,
    Struct,
)
from pystachio.basic import EnumContainer, SimpleObject
from pystachio.choice import ChoiceContainer
from pystachio.composite import Structural
from pystachio.container import ListContainer, MapContainer

from config.errors import ConfigError, join_problems

# ---- units (bytes) ----
BYTES = 1
KB = 1024 * BYTES
MB = 1024 * KB
GB = 1024 * MB
TB = 1024 * GB

# ---- Thermos structs (TH/config/schema_base.py) ----


class ThermosContext(Struct):
    """The `thermos` template namespace, bound when a task is started."""
    ports = Map(String, Integer)  # port name -> port number
    task_id = String
    user = String


class RotatePolicy(Struct):
    log_size = Default(Integer, 100 * MB)  # bytes; a log file is rotated once it reaches this
    backups = Default(Integer, 5)  # rotated files kept (.1 .. .N)


LoggerDestination = Enum("LoggerDestination", ("file", "console", "both", "none"))
LoggerMode = Enum("LoggerMode", ("standard", "rotate"))


class Logger(Struct):
    destination = Default(LoggerDestination, "file")
    mode = Default(LoggerMode, "standard")
    rotate = RotatePolicy  # unset: 100 MiB / 5 backups in rotate mode


class Resources(Struct):
    cpu = Required(Float)  # cores
    ram = Required(Integer)  # bytes
    disk = Required(Integer)  # bytes
    gpu = Default(Integer, 0)  # devices


class Constraint(Struct):
    order = List(String)  # process names that run one after another


class Process(Struct):
    cmdline = Required(String)  # run as /bin/bash -c CMDLINE
    name = Required(String)
    resources = Resources  # reserved, unused
    max_failures = Default(Integer, 1)  # failed runs before it fails for good; 0 = unlimited
    daemon = Default(Boolean, False)  # restart after a successful exit too
    ephemeral = Default(Boolean, False)  # the task does not wait for it
    min_duration = Default(Float, 5)  # seconds between the end of a run and the next start
    final = Default(Boolean, False)  # runs in finalization, after the regular processes
    logger = Logger  # unset: file / standard


class Task(Struct):
    name = Default(String, "{{processes[0].name}}")
    processes = List(Process)
    constraints = Default(List(Constraint), [])
    resources = Resources
    max_failures = Default(Integer, 1)  # permanently failed processes that fail the task; 0 = never
    max_concurrency = Default(Integer, 0)  # processes running at once; 0 = unlimited
    finalization_wait = Default(Float, 30)  # seconds for cleaning up and final processes
    user = String  # reserved, unused


# ---- Aurora structs (CFG/schema/base.py) ----


class MesosContext(Struct):
    """The `mesos` template namespace, bound when a task is decoded."""
    instance = Required(Integer)
    hostname = Required(String)


class HttpHealthChecker(Struct):
    endpoint = Default(String, "/health")
    expected_response = Default(String, "ok")  # compared lower-cased and stripped; "" = any body
    expected_response_code = Default(Integer, 0)  # 0 = any code


class ShellHealthChecker(Struct):
    shell_command = Required(String)  # run with /bin/bash -c in the sandbox; exit 0 passes


class TcpHealthChecker(Struct):
    """Stoker extension: a TCP connect to the `health` port passes."""


class HealthCheckerConfig(Struct):
    http = HttpHealthChecker
    shell = ShellHealthChecker
    tcp = TcpHealthChecker


class HealthCheckConfig(Struct):
    health_checker = Default(HealthCheckerConfig, HealthCheckerConfig(http=HttpHealthChecker()))
    initial_interval_secs = Default(Float, 15.0)  # grace, converted to a number of attempts
    interval_secs = Default(Float, 10.0)  # pause after a check ends before the next one
    max_consecutive_failures = Default(Integer, 0)
    min_consecutive_successes = Default(Integer, 1)
    timeout_secs = Default(Float, 1.0)  # per check


class HttpLifecycleConfig(Struct):
    port = Default(String, "health")  # a port *name*
    graceful_shutdown_endpoint = Default(String, "/quitquitquit")
    shutdown_endpoint = Default(String, "/abortabortabort")
    graceful_shutdown_wait_secs = Default(Float, 5)  # seconds
    shutdown_wait_secs = Default(Float, 5)  # seconds


class LifecycleConfig(Struct):
    http = HttpLifecycleConfig


DisableLifecycle = LifecycleConfig()
DefaultLifecycleConfig = LifecycleConfig(http=HttpLifecycleConfig())


class Announcer(Struct):
    primary_port = Default(String, "http")
    portmap = Default(Map(String, String), {"aurora": "{{primary_port}}"})  # alias -> name/number
    zk_path = String


class QueueUpdateStrategy(Struct):
    batch_size = Default(Integer, 1)


class BatchUpdateStrategy(Struct):
    batch_size = Default(Integer, 1)
    autopause_after_batch = Default(Boolean, False)


class VariableBatchUpdateStrategy(Struct):
    batch_sizes = Required(List(Integer))
    autopause_after_batch = Default(Boolean, False)


class UpdateConfig(Struct):
    """Scheduler only: accepted and carried, never used by Stoker."""
    batch_size = Default(Integer, 1)
    watch_secs = Default(Integer, 45)  # seconds
    max_per_shard_failures = Default(Integer, 0)
    max_total_failures = Default(Integer, 0)
    rollback_on_failure = Default(Boolean, True)
    wait_for_batch_completion = Default(Boolean, False)
    pulse_interval_secs = Integer  # seconds
    sla_aware = Default(Boolean, False)
    update_strategy = Choice([QueueUpdateStrategy, BatchUpdateStrategy, VariableBatchUpdateStrategy])


class Metadata(Struct):
    key = Required(String)
    value = Required(String)


class ExecutorConfig(Struct):
    name = Default(String, "AuroraExecutor")
    data = Default(String, "")


class PartitionPolicy(Struct):
    reschedule = Default(Boolean, True)
    delay_secs = Default(Integer, 0)  # seconds


class CoordinatorSlaPolicy(Struct):
    coordinator_url = Required(String)
    status_key = Default(String, "drain")


class CountSlaPolicy(Struct):
    count = Required(Integer)
    duration_secs = Required(Integer)


class PercentageSlaPolicy(Struct):
    percentage = Required(Float)
    duration_secs = Required(Integer)


class Parameter(Struct):
    name = Required(String)
    value = Required(String)


class Docker(Struct):
    image = Required(String)
    parameters = Default(List(Parameter), [])


class Container(Struct):
    docker = Docker


class AppcImage(Struct):
    name = Required(String)
    image_id = Required(String)


class DockerImage(Struct):
    name = Required(String)
    tag = Required(String)


VolumeMode = Enum("VolumeMode", ("RO", "RW"))


class Volume(Struct):
    container_path = Required(String)
    host_path = Required(String)
    mode = Required(VolumeMode)


class Mesos(Struct):
    image = Choice([AppcImage, DockerImage])
    volumes = Default(List(Volume), [])


class MesosJob(Struct):
    name = Default(String, "{{task.name}}")
    role = Required(String)
    contact = String
    cluster = Required(String)
    environment = Required(String)
    instances = Default(Integer, 1)
    task = Required(Task)
    announce = Announcer
    tier = String
    cron_schedule = String
    cron_collision_policy = Default(String, "KILL_EXISTING")
    update_config = Default(UpdateConfig, UpdateConfig())
    constraints = Map(String, String)
    metadata = Default(List(Metadata), [])
    service = Default(Boolean, False)  # restarted whenever its task ends
    max_task_failures = Default(Integer, 1)  # -1 = unlimited
    production = Default(Boolean, False)
    priority = Default(Integer, 0)
    health_check_config = Default(HealthCheckConfig, HealthCheckConfig())
    lifecycle = Default(LifecycleConfig, DefaultLifecycleConfig)
    task_links = Map(String, String)
    executor_config = Default(ExecutorConfig, ExecutorConfig())
    enable_hooks = Default(Boolean, False)
    partition_policy = PartitionPolicy
    sla_policy = Choice([CoordinatorSlaPolicy, CountSlaPolicy, PercentageSlaPolicy])
    container = Choice([Container, Docker, Mesos])


Job = MesosJob
Service = Job(service=True)

# ---- helpers (TH/config/schema_helpers.py); orders are kept stable, never through a set ----


def _unique(items: list) -> list:
    kept: list = []
    for item in items:
        if not any(item == seen for seen in kept):
            kept.append(item)
    return kept


class Units:
    """Resource sums and maxima, and order-preserving merges of processes and constraints."""

    @classmethod
    def optional_resources(cls, resources: Any) -> Resources:
        return Resources(cpu=0, ram=0, disk=0) if resources is Empty else resources

    @classmethod
    def _combine(cls, how, resources) -> Resources:
        def unit(value) -> Any:
            return 0 if value is Empty else value.get()

        def pair(r1, r2) -> Resources:
            return Resources(**{dim: how(unit(getattr(r1, dim)()), unit(getattr(r2, dim)()))
                                for dim in ("cpu", "ram", "disk", "gpu")})

        return reduce(pair, map(cls.optional_resources, resources), Resources(cpu=0, ram=0, disk=0))

    @classmethod
    def resources_sum(cls, *resources) -> Resources:
        return cls._combine(lambda a, b: a + b, resources)

    @classmethod
    def resources_max(cls, resources) -> Resources:
        return cls._combine(max, list(resources))

    @classmethod
    def processes_merge(cls, tasks) -> list:
        return _unique(list(itertools.chain.from_iterable(t.processes() for t in tasks)))

    @classmethod
    def constraints_merge(cls, tasks) -> list:
        return _unique(list(itertools.chain.from_iterable(t.constraints() for t in tasks)))


def _process_name(process: Any) -> str:
    if isinstance(process, Process):
        return process.name().get()
    if isinstance(process, str):
        return process
    raise ValueError(f"order() takes Process objects or process names, not {process!r}")


def order(*processes: Any) -> list:
    """`order(p1, p2, p3)`: one Constraint running them in that order; lists concatenate."""
    return [Constraint(order=[_process_name(p) for p in processes])]


class Tasks:
    SIMPLE_CPU = 1.0
    SIMPLE_RAM = 1 * GB
    SIMPLE_DISK = 1 * GB

    @classmethod
    def combine(cls, *tasks, **kw) -> Task:
        """All processes in parallel; resources summed; other fields from the last task."""
        if not tasks:
            return Task()
        base = tasks[-1](processes=Units.processes_merge(tasks))
        return base(resources=Units.resources_sum(*(t.resources() for t in tasks)),
                    constraints=Units.constraints_merge(tasks), **kw)

    @classmethod
    def concat(cls, *tasks, **kw) -> Task:
        """Every process of task k runs before any process of task k+1."""
        if not tasks:
            return Task()
        base = tasks[-1](processes=Units.processes_merge(tasks),
                         resources=Units.resources_max(t.resources() for t in tasks))
        constraints = Units.constraints_merge(tasks)
        for t1, t2 in zip(tasks[:-1], tasks[1:]):
            for p1 in t1.processes():
                for p2 in t2.processes():
                    if p1 != p2:
                        constraints.extend(order(p1, p2))
        return base(constraints=constraints, **kw)

    @classmethod
    def simple(cls, name: str, command: str) -> Task:
        return Task(name=name, processes=[Process(name=name, cmdline=command)],
                    resources=Resources(cpu=cls.SIMPLE_CPU, ram=cls.SIMPLE_RAM, disk=cls.SIMPLE_DISK))

    @classmethod
    def sequential(cls, task: Task) -> Task:
        if task.constraints() is not Empty and len(task.constraints().get()) > 0:
            raise ValueError("Cannot turn a Task with existing constraints into a SequentialTask.")
        if task.processes() is Empty:
            return task
        return task(constraints=order(*task.processes()))


def SimpleTask(name: str, command: str) -> Task:
    """A task with one process and 1 CPU, 1 GiB RAM, 1 GiB disk."""
    return Tasks.simple(name, command)


def SequentialTask(*args, **kw) -> Task:
    """A Task whose processes run one after another, in list order."""
    return Tasks.sequential(Task(*args, **kw))


combine_tasks = Tasks.combine
concat_tasks = Tasks.concat

_PYSTACHIO_NAMES = ("Struct", "String", "Integer", "Float", "Boolean", "Default", "Required",
                    "List", "Map", "Enum", "Choice", "Empty", "Ref", "Environment")
_SCHEMA_NAMES = (
    "BYTES", "KB", "MB", "GB", "TB", "ThermosContext", "RotatePolicy", "Logger",
    "LoggerDestination", "LoggerMode", "Resources", "Constraint", "Process", "Task",
    "MesosContext", "HttpHealthChecker", "ShellHealthChecker", "TcpHealthChecker",
    "HealthCheckerConfig", "HealthCheckConfig", "HttpLifecycleConfig", "LifecycleConfig",
    "DisableLifecycle", "DefaultLifecycleConfig", "Announcer", "QueueUpdateStrategy",
    "BatchUpdateStrategy", "VariableBatchUpdateStrategy", "UpdateConfig", "Metadata",
    "ExecutorConfig", "PartitionPolicy", "CoordinatorSlaPolicy", "CountSlaPolicy",
    "PercentageSlaPolicy", "Parameter", "Docker", "Container", "AppcImage", "DockerImage",
    "VolumeMode", "Volume", "Mesos", "MesosJob", "Job", "Service", "Units", "Tasks", "order",
    "SimpleTask", "SequentialTask", "combine_tasks", "concat_tasks",
)
# Everything a `.aurora` file may name without importing it. Copy before use.
SCHEMA_NAMESPACE: dict[str, Any] = {
    **{name: getattr(pystachio, name) for name in _PYSTACHIO_NAMES},
    **{name: globals()[name] for name in _SCHEMA_NAMES},
}

# ---- plain trees (JSON-like values) -> structs, with the failing field named ----

_KIND_WORDS = {"HealthCheckerConfig": "health checker kind"}


def from_tree(cls: type, tree: Any, path: str = "job") -> Any:
    """Builds a `cls` (a pystachio type) from plain values, checking every type on the way.

    Strings stand for themselves; numbers must be numbers (a template in a numeric field is
    an error: only strings are expanded later). Raises `ConfigError` naming each bad field
    as a dotted path starting at `path`, with its value.
    """
    problems: list[str] = []
    built = _build(cls, tree, path, problems)
    if problems:
        raise ConfigError(join_problems("invalid " + path, problems), problems)
    return built


def _build(cls: Any, value: Any, path: str, problems: list[str]) -> Any:
    if issubclass(cls, Structural):
        return _build_struct(cls, value, path, problems)
    if issubclass(cls, ListContainer):
        if not isinstance(value, (list, tuple)):
            problems.append(f"{path} must be a list, not {_show(value)}")
            return None
        items = [_build(cls.TYPE, v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
        return None if any(v is None for v in items) else cls(items)
    if issubclass(cls, MapContainer):
        if not isinstance(value, Mapping):
            problems.append(f"{path} must be a map, not {_show(value)}")
            return None
        pairs = [(_build(cls.KEYTYPE, k, f"{path} key", problems),
                  _build(cls.VALUETYPE, v, f"{path}[{k}]", problems)) for k, v in value.items()]
        return None if any(None in pair for pair in pairs) else cls(*pairs)
    if issubclass(cls, ChoiceContainer):
        return _build_choice(cls, value, path, problems)
    return _build_scalar(cls, value, path, problems)


def _build_struct(cls: Any, value: Any, path: str, problems: list[str]) -> Any:
    if not isinstance(value, Mapping):
        problems.append(f"{path} must be a {cls.__name__} (a map of fields), not {_show(value)}")
        return None
    fields = {}
    for key, item in value.items():
        if key not in cls.TYPEMAP:
            word = _KIND_WORDS.get(cls.__name__, "field")
            known = ", ".join(sorted(cls.TYPEMAP)) or "no fields"
            problems.append(f"{path}: unknown {word} {key!r} ({cls.__name__} has {known})")
        elif item is not None:  # JSON null reads as "not given"
            fields[key] = _build(cls.TYPEMAP[key].klazz, item, f"{path}.{key}", problems)
    for name, sig in sorted(cls.TYPEMAP.items()):
        if sig.required and name not in fields:
            problems.append(f"{path}.{name} is required but missing")
    if any(v is None for v in fields.values()):
        return None
    return cls(**fields)


def _build_choice(cls: Any, value: Any, path: str, problems: list[str]) -> Any:
    for alternative in cls.CHOICES:
        attempt: list[str] = []
        built = _build(alternative, value, path, attempt)
        if not attempt:
            return cls(built)
    names = ", ".join(c.__name__ for c in cls.CHOICES)
    problems.append(f"{path} = {_show(value)} is none of {names}")
    return None


def _build_scalar(cls: Any, value: Any, path: str, problems: list[str]) -> Any:
    if not issubclass(cls, SimpleObject):
        problems.append(f"{path}: unsupported schema type {cls.__name__}")
        return None
    problem = _scalar_problem(cls, value)
    if problem:
        problems.append(f"{path} = {_show(value)} {problem}")
        return None
    if issubclass(cls, EnumContainer):
        return cls(value)
    return cls(cls.coerce(value))


def _scalar_problem(cls: Any, value: Any) -> str | None:
    if issubclass(cls, EnumContainer):
        if isinstance(value, str) and value in cls.VALUES:
            return None
        return f"is not one of {', '.join(cls.VALUES)}"
    if cls is String:
        return None if isinstance(value, (str, int, float)) and not isinstance(value, bool) \
            else "is not a string"
    if cls is Boolean:
        if isinstance(value, bool) or value in ("true", "false", "True", "False"):
            return None
        return "is not a boolean (true or false)"
    word = "an integer" if cls is Integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return f"is not {word}"
    if isinstance(value, int) and cls is Integer:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return f"is not {word}" + (" (templates are not allowed in numeric fields)"
                                   if isinstance(value, str) and "{{" in value else "")
    if not math.isfinite(number):
        return "is not a finite number"
    if cls is Integer and (not number.is_integer() or (isinstance(value, str) and "." in value)):
        return "is not an integer"
    return None


def _show(value: Any) -> str:
    """A value for a message: its repr, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = list(_SCHEMA_NAMES) + ["SCHEMA_NAMESPACE", "from_tree", "Ref"]
