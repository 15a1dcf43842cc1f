"""Aurora's structs: a job around one task (`Job`/`MesosJob`, `Service`), its health check,
its HTTP lifecycle, and the scheduler-side fields Stoker accepts and carries without using
(update strategy, SLA and partition policies, containers, metadata).

Differences from Aurora, all widening: the lifecycle waits are Float (Aurora: Integer) so
tests can use fractions of a second; `HealthCheckerConfig.tcp` is a Stoker extension (a TCP
connect to the `health` port). docs/aurora.md §7 gives the semantics of each field. Never does
I/O, never logs, never reads the environment.
"""
from __future__ import annotations

from pystachio import Boolean, Default, Float, Integer, Required, String

from config.schema.shared import Choice, Enum, List, Map, Struct
from config.schema.thermos import Task

# Aurora: apache/aurora/config/schema/base.py

AURORA_EXECUTOR_NAME = "AuroraExecutor"  # the executor config whose data is the Thermos job


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


DefaultHealthChecker = HealthCheckerConfig(http=HttpHealthChecker())


class HealthCheckConfig(Struct):
    health_checker = Default(HealthCheckerConfig, DefaultHealthChecker)
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


class MesosTaskInstance(Struct):
    """The legacy executor payload (before the client sent the whole Job): still accepted."""
    task = Required(Task)
    instance = Required(Integer)
    role = Required(String)
    announce = Announcer
    environment = Required(String)
    health_check_config = Default(HealthCheckConfig, HealthCheckConfig())
    lifecycle = LifecycleConfig


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
    name = Default(String, AURORA_EXECUTOR_NAME)
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
Mode = VolumeMode  # Aurora's name for it


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
