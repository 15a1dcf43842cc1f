"""The job schema: pystachio Structs with Aurora's names, types and defaults.

    thermos.py   what one task is: Process, Task, Resources, Constraint, Logger, ...,
                 ThermosContext (the `thermos` template namespace) and the size units
    aurora.py    the job around it: Job/MesosJob, Service, HealthCheckConfig and its
                 checkers, LifecycleConfig, MesosContext, and the scheduler-only fields
    helpers.py   order, SequentialTask, SimpleTask, Tasks, Units, combine/concat_tasks
    shared.py    the `Struct` (and `List`, `Map`, `Choice`, `Enum`) the two above use: pystachio's,
                 each type made once for the whole schema

This package exposes all of them, and `SCHEMA_NAMESPACE`: everything a `.aurora` file sees
without importing, exactly the names Aurora's client gives it (`from pystachio import *`,
then Aurora's schema module, which carries Thermos' and the helpers), plus Stoker's
`TcpHealthChecker` and `VolumeMode` (Aurora's `Mode`). Building a struct from plain
JSON-like values is `config.typed_tree.from_tree`. Never does I/O, never logs, never reads
the environment.
"""
from __future__ import annotations

from typing import Any

import pystachio
from pystachio import Empty, Ref

from config.schema.aurora import (
    AURORA_EXECUTOR_NAME,
    Announcer,
    AppcImage,
    BatchUpdateStrategy,
    Container,
    CoordinatorSlaPolicy,
    CountSlaPolicy,
    DefaultHealthChecker,
    DefaultLifecycleConfig,
    DisableLifecycle,
    Docker,
    DockerImage,
    ExecutorConfig,
    HealthCheckConfig,
    HealthCheckerConfig,
    HttpHealthChecker,
    HttpLifecycleConfig,
    Job,
    LifecycleConfig,
    Mesos,
    MesosContext,
    MesosJob,
    MesosTaskInstance,
    Metadata,
    Mode,
    Parameter,
    PartitionPolicy,
    PercentageSlaPolicy,
    QueueUpdateStrategy,
    Service,
    ShellHealthChecker,
    TcpHealthChecker,
    UpdateConfig,
    VariableBatchUpdateStrategy,
    Volume,
    VolumeMode,
)
from config.schema.helpers import (
    Options,
    Processes,
    SequentialTask,
    SimpleTask,
    Tasks,
    Units,
    combine_tasks,
    concat_tasks,
    java_options,
    order,
    python_options,
)
from config.schema.thermos import (
    BYTES,
    GB,
    KB,
    MB,
    TB,
    Constraint,
    Logger,
    LoggerDestination,
    LoggerMode,
    Process,
    Resources,
    RotatePolicy,
    Task,
    ThermosContext,
)

__all__ = [
    "BYTES", "KB", "MB", "GB", "TB", "ThermosContext", "RotatePolicy", "Logger",
    "LoggerDestination", "LoggerMode", "Resources", "Constraint", "Process", "Task",
    "MesosContext", "HttpHealthChecker", "ShellHealthChecker", "TcpHealthChecker",
    "HealthCheckerConfig", "HealthCheckConfig", "HttpLifecycleConfig", "LifecycleConfig",
    "DisableLifecycle", "DefaultLifecycleConfig", "Announcer", "QueueUpdateStrategy",
    "BatchUpdateStrategy", "VariableBatchUpdateStrategy", "UpdateConfig", "Metadata",
    "ExecutorConfig", "PartitionPolicy", "CoordinatorSlaPolicy", "CountSlaPolicy",
    "PercentageSlaPolicy", "Parameter", "Docker", "Container", "AppcImage", "DockerImage",
    "VolumeMode", "Mode", "Volume", "Mesos", "MesosJob", "MesosTaskInstance", "Job", "Service",
    "Units", "Tasks", "Processes", "Options", "order", "SimpleTask", "SequentialTask",
    "combine_tasks", "concat_tasks", "java_options", "python_options", "DefaultHealthChecker",
    "AURORA_EXECUTOR_NAME", "SCHEMA_NAMESPACE", "Empty", "Ref",
]

_SCHEMA_NAMES = [name for name in __all__ if name not in ("SCHEMA_NAMESPACE", "Empty", "Ref")]
# What `from pystachio import *` gives Aurora's loader: pystachio has no __all__, so every
# public name of the package, its submodules and its own `sys` import included.
_PYSTACHIO_NAMES = ("Boolean", "Choice", "Default", "Empty", "Enum", "Environment", "Float", "Integer",
                    "List", "Map", "MustacheParser", "Namable", "Ref", "Required", "String", "Struct",
                    "Type", "TypeCheck", "TypeFactory", "base", "basic", "choice", "composite",
                    "container", "naming", "parsing", "sys", "typing")
# Everything a `.aurora` file may name without importing it. Copy before use.
SCHEMA_NAMESPACE: dict[str, Any] = {
    **{name: getattr(pystachio, name) for name in _PYSTACHIO_NAMES},
    **{name: globals()[name] for name in _SCHEMA_NAMES},
}
