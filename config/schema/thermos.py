"""Thermos' structs: what one task is (its processes, their ordering, resources and logs),
with Thermos' names, types and defaults, and the size units.

Differences from Thermos, all widening: `Process.min_duration` and `Task.finalization_wait`
are Float (Thermos: Integer) so tests can use fractions of a second. docs/aurora.md §7 gives the
semantics of each field. Never does I/O, never logs, never reads the environment.
"""
from __future__ import annotations

from pystachio import Boolean, Default, Float, Integer, Required, String

from config.schema.shared import Enum, List, Map, Struct

# ---- units (bytes) ----
BYTES = 1
KB = 1024 * BYTES
MB = 1024 * KB
GB = 1024 * MB
TB = 1024 * GB

# ---- structs (Thermos: apache/thermos/config/schema_base.py) ----


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
