"""Aurora's AssignedTask from TaskInfo.data: TBinaryProtocol bytes in, an `AuroraTask` out.

Owns the Thrift side: the decode, by the field tables of `aurora.thrift` (Aurora's structs
and field ids, the part an executor receives; `idl.py` reads it on first use), and the
conversion into the plain values of `config.aurora.task`. `binary.check_struct` vets the
bytes first (types, lengths, counts, depth, size), so the reader only ever reads
well-formed input of bounded size. No Thrift library: the decode is one walk over a few
kilobytes, and thriftpy2's import and IDL parse cost about 0.2 s and 9 MB per launch; the
tests encode their AssignedTasks with thriftpy2, so every decode is checked against
another implementation of the protocol.

`decode_assigned_task` raises only `TaskDataError`, whose message shows what arrived and
names the field that is wrong. No logging; the only I/O is reading the packaged IDL.
"""
from __future__ import annotations

import functools
import os
import types
from struct import Struct
from typing import Any

from config.aurora.binary import BOOL, DOUBLE, FIXED_SIZE, LIST, MAP, SET, STOP, STRING, STRUCT, check_struct
from config.aurora.errors import TaskDataError, aurora_error
from config.aurora.idl import Idl, IdlType, read_idl
from config.aurora.task import (
    AuroraTask,
    Constraint,
    Container,
    ContainerKind,
    FetcherUri,
    Image,
    JobKey,
    PartitionPolicy,
    Resources,
    SlaPolicy,
    Volume,
    VolumeMode,
)
from config.words import quoted

IDL_FILE = "aurora.thrift"
_DOUBLE = Struct("!d")


@functools.cache
def idl() -> Idl:
    """The packaged IDL's field tables."""
    with open(os.path.join(os.path.dirname(__file__), IDL_FILE), encoding="utf-8") as f:
        return read_idl(f.read())


def decode_assigned_task(data: bytes) -> AuroraTask:
    """Decode and check one AssignedTask; raises only TaskDataError."""
    check_struct(data, "AssignedTask", field_names)
    try:
        raw = _Reader(data, idl()).struct("AssignedTask")
    except Exception as exc:  # check_struct passed; whatever this is, the message says it
        raise aurora_error(data, f"the Thrift decoder failed: {type(exc).__name__}: {exc}") from None
    try:
        return _Convert(data).assigned_task(raw)
    except TaskDataError:
        raise
    except Exception as exc:  # a value of a type the IDL does not allow: not our IDL's bytes
        raise aurora_error(data, f"unexpected value: {type(exc).__name__}: {exc}") from None


def field_names(path: tuple[int, ...]) -> str | None:
    """(4, 25, 2) -> "task.executorConfig.data", by the IDL; None past a field it lacks."""
    tables, names = idl().structs, []
    fields = tables["AssignedTask"]
    for fid in path:
        field = fields.get(fid)
        if field is None:
            return None
        names.append(field.name)
        # The fields of the struct the next id belongs to: the field's own, or its elements'
        # (map: values'); none past a scalar, a container of scalars or a nested container.
        inner = field.type[-1] if isinstance(field.type, tuple) else field.type
        fields = tables.get(str(inner), {})  # (a nested container's tuple names no struct)
    return ".".join(names)


class _Reader:
    """TBinaryProtocol into plain values, as Thrift's generated readers do it: a struct is a
    namespace with every field of the IDL (None when absent); a field whose id the IDL does
    not have, or that arrives as another type, is skipped; so is a list, set or map whose
    element types are not the IDL's (it reads as absent: None). Strings stay bytes: `_Convert`
    decodes each, naming the field. Sets read as lists, in wire order. Only for bytes that
    `check_struct` passed: lengths, counts and depth are within bounds."""

    def __init__(self, data: bytes, idl: Idl) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.idl = idl

    def take(self, size: int) -> memoryview:
        start = self.pos
        self.pos += size
        return self.data[start:self.pos]

    def int_(self, size: int) -> int:
        return int.from_bytes(self.take(size), signed=True)  # (big-endian: the default)

    def struct(self, name: str) -> types.SimpleNamespace:
        fields = self.idl.structs[name]
        values: dict[str, Any] = dict.fromkeys(f.name for f in fields.values())
        while (ftype := self.int_(1)) != STOP:
            field = fields.get(self.int_(2))
            if field is None or self.idl.wire_type(field.type) != ftype:
                self.skip(ftype)
            else:
                values[field.name] = self.value(field.type)
        return types.SimpleNamespace(**values)

    def value(self, t: IdlType) -> Any:
        ttype = self.idl.wire_type(t)
        if ttype == STRUCT:
            return self.struct(t)  # type: ignore[arg-type]  # a struct's or union's name
        if ttype not in (LIST, SET, MAP):
            return self.scalar(ttype)
        assert isinstance(t, tuple)
        wanted = tuple(self.idl.wire_type(inner) for inner in t[1:])
        found = tuple(self.int_(1) for _ in wanted)
        size = self.int_(4)
        if found != wanted:
            for _ in range(size):
                for inner_type in found:
                    self.skip(inner_type)
            return None  # as if absent: every reader of a container reads `or {}`, `or []`
        if ttype == MAP:
            return {self.value(t[1]): self.value(t[2]) for _ in range(size)}
        return [self.value(t[1]) for _ in range(size)]

    def scalar(self, ttype: int) -> Any:
        if ttype == STRING:
            return bytes(self.take(self.int_(4)))
        if ttype == DOUBLE:
            return _DOUBLE.unpack(self.take(8))[0]
        if ttype == BOOL:
            return self.int_(1) != 0
        return self.int_(FIXED_SIZE[ttype])

    def skip(self, ttype: int) -> None:
        if ttype in FIXED_SIZE:
            self.pos += FIXED_SIZE[ttype]
        elif ttype == STRING:
            size = self.int_(4)  # first: `self.pos += self.int_(4)` would add to the old pos
            self.pos += size
        elif ttype == STRUCT:
            while (ftype := self.int_(1)) != STOP:
                self.pos += 2
                self.skip(ftype)
        else:
            inner = (self.int_(1), self.int_(1)) if ttype == MAP else (self.int_(1),)
            for _ in range(self.int_(4)):
                for inner_type in inner:
                    self.skip(inner_type)


class _Convert:
    """The decoded struct (strings as bytes) to AuroraTask; each error names the field."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def fail(self, problem: str) -> TaskDataError:
        return aurora_error(self.data, problem)

    def text(self, value: bytes | None, field: str, default: str = "") -> str:
        if value is None:
            return default
        try:
            return value.decode()  # (UTF-8, strict: the default)
        except UnicodeDecodeError as exc:
            raise self.fail(f"{field} is not UTF-8 (byte {exc.start}: {exc.reason})") from None

    def optional_text(self, value: bytes | None, field: str) -> str | None:
        return None if value is None else self.text(value, field)

    def assigned_task(self, raw: Any) -> AuroraTask:
        task_id = self.text(raw.taskId, "taskId")
        if not task_id:
            raise self.fail("it has no taskId (field 1, a STRING)")
        if raw.instanceId is None:
            raise self.fail("it has no instanceId (field 6, an I32)")
        if raw.instanceId < 0:
            raise self.fail(f"instanceId is {raw.instanceId}; it must be 0 or more")
        config = raw.task
        if config is None:
            raise self.fail("it has no task (field 4, a TaskConfig struct)")
        return AuroraTask(
            task_id=task_id, instance_id=raw.instanceId, slave_id=self.text(raw.slaveId, "slaveId"),
            slave_host=self.text(raw.slaveHost, "slaveHost"), assigned_ports=self.ports(raw.assignedPorts),
            **self.task_config(config))

    def ports(self, raw: dict[bytes, int] | None) -> dict[str, int]:
        ports = {self.text(name, "an assignedPorts name"): number for name, number in (raw or {}).items()}
        bad = [f"{name}={number}" for name, number in ports.items() if not 0 < number < 65536]
        if bad:
            raise self.fail(f"assignedPorts numbers must be in 1..65535: {', '.join(bad)}")
        return ports

    def task_config(self, raw: Any) -> dict[str, Any]:
        executor = raw.executorConfig
        data = self.text(executor.data, "task.executorConfig.data") if executor is not None else ""
        if not data:
            raise self.fail("task.executorConfig.data is empty: the task has no Thermos config")
        if raw.job is None:
            raise self.fail("task.job is missing: the task has no job key (TaskConfig field 28, a JobKey)")
        job = JobKey(role=self.text(raw.job.role, "task.job.role"),
                     environment=self.text(raw.job.environment, "task.job.environment"),
                     name=self.text(raw.job.name, "task.job.name"))
        owner = raw.owner.user if raw.owner is not None else None
        return dict(
            job=job, executor_name=self.text(executor.name, "task.executorConfig.name"), executor_data=data,
            container=self.container(raw.container), resources=self.resources(raw.resources or []),
            tier=self.optional_text(raw.tier, "task.tier"), production=raw.production,
            is_service=bool(raw.isService), priority=raw.priority or 0,
            max_task_failures=raw.maxTaskFailures or 0,
            owner_user=self.optional_text(owner, "task.owner.user"),
            contact_email=self.optional_text(raw.contactEmail, "task.contactEmail"),
            partition_policy=self.partition_policy(raw.partitionPolicy),
            sla_policy=self.sla_policy(raw.slaPolicy),
            **self.collections(raw))

    def pair(self, key: bytes | None, value: bytes | None, field: str) -> tuple[str, str]:
        return self.text(key, f"a {field} key"), self.text(value, f"a {field} value")

    def collections(self, raw: Any) -> dict[str, Any]:
        return dict(
            metadata=tuple(self.pair(m.key, m.value, "task.metadata") for m in raw.metadata or []),
            constraints=tuple(self.constraint(c) for c in raw.constraints or []),
            task_links=tuple(self.pair(k, v, "task.taskLinks") for k, v in (raw.taskLinks or {}).items()),
            fetcher_uris=tuple(self.fetcher_uri(u) for u in raw.mesosFetcherUris or []))

    def fetcher_uri(self, raw: Any) -> FetcherUri:
        return FetcherUri(self.text(raw.value, "a task.mesosFetcherUris value"), raw.extract, raw.cache,
                          self.optional_text(raw.outputFile, "a task.mesosFetcherUris outputFile"))

    def container(self, raw: Any) -> Container:
        if raw is None:  # absent on the wire: the IDL default, {"mesos": {}}
            return Container(ContainerKind.MESOS)
        if (raw.mesos is None) == (raw.docker is None):
            what = ("both mesos and docker" if raw.mesos is not None
                    else "neither mesos nor docker (a newer kind?)")
            raise self.fail(f"task.container sets {what}; Stoker runs exactly one of them")
        if raw.docker is not None:
            params = tuple(self.pair(p.name, p.value, "task.container.docker.parameters")
                           for p in raw.docker.parameters or [])
            image = self.text(raw.docker.image, "task.container.docker.image")
            return Container(ContainerKind.DOCKER, docker_image=image, docker_parameters=params)
        volumes = tuple(self.volume(v) for v in raw.mesos.volumes or [])
        if raw.mesos.image is None:
            return Container(ContainerKind.MESOS, volumes=volumes)
        return Container(ContainerKind.MESOS_WITH_IMAGE, image=self.image(raw.mesos.image), volumes=volumes)

    def image(self, raw: Any) -> Image:
        field = "task.container.mesos.image"
        if raw.docker is not None and raw.appc is None:
            return Image("docker", self.text(raw.docker.name, f"{field}.docker.name"),
                         self.text(raw.docker.tag, f"{field}.docker.tag"))
        if raw.appc is not None and raw.docker is None:
            return Image("appc", self.text(raw.appc.name, f"{field}.appc.name"),
                         self.text(raw.appc.imageId, f"{field}.appc.imageId"))
        raise self.fail(f"{field} must set exactly one of docker and appc")

    def volume(self, raw: Any) -> Volume:
        try:
            mode = VolumeMode(raw.mode)
        except ValueError:
            raise self.fail(f"a task.container.mesos.volumes mode is {raw.mode}, "
                            f"neither RW (1) nor RO (2)") from None
        return Volume(self.text(raw.containerPath, "a volume containerPath"),
                      self.text(raw.hostPath, "a volume hostPath"), mode)

    def resources(self, raw: list[Any]) -> Resources:
        # Entries of a resource kind newer than the IDL set no known field and are skipped.
        ports = {self.text(r.namedPort, "a task.resources namedPort")
                 for r in raw if r.namedPort is not None}
        return Resources(cpus=sum(r.numCpus for r in raw if r.numCpus is not None),
                         ram_mb=sum(r.ramMb for r in raw if r.ramMb is not None),
                         disk_mb=sum(r.diskMb for r in raw if r.diskMb is not None),
                         gpus=sum(r.numGpus for r in raw if r.numGpus is not None),
                         named_ports=tuple(sorted(ports)))

    def constraint(self, raw: Any) -> Constraint:
        name = self.text(raw.name, "a task.constraints name")
        kind = raw.constraint
        if kind is not None and kind.value is not None:
            values = tuple(self.text(v, f"a value of constraint {quoted(name)}") for v in kind.value.values or [])
            return Constraint(name, values=values, negated=bool(kind.value.negated))
        if kind is not None and kind.limit is not None:
            return Constraint(name, limit=kind.limit.limit)
        return Constraint(name)

    def partition_policy(self, raw: Any) -> PartitionPolicy | None:
        return None if raw is None else PartitionPolicy(bool(raw.reschedule), raw.delaySecs)

    def sla_policy(self, raw: Any) -> SlaPolicy | None:
        if raw is None:
            return None
        if raw.percentageSlaPolicy is not None:
            p = raw.percentageSlaPolicy
            return SlaPolicy("percentage", percentage=p.percentage, duration_secs=p.durationSecs)
        if raw.countSlaPolicy is not None:
            n = raw.countSlaPolicy
            return SlaPolicy("count", count=n.count, duration_secs=n.durationSecs)
        if raw.coordinatorSlaPolicy is not None:
            c = raw.coordinatorSlaPolicy
            url = self.optional_text(c.coordinatorUrl, "task.slaPolicy coordinatorUrl")
            key = self.optional_text(c.statusKey, "task.slaPolicy statusKey")
            return SlaPolicy("coordinator", coordinator_url=url, status_key=key)
        return None
