"""What Stoker keeps of an Aurora AssignedTask: plain, frozen values, no Thrift objects.

`config.aurora.wire` builds an `AuroraTask` from the TBinaryProtocol bytes the scheduler
puts into TaskInfo.data; everything else reads these classes only. Names follow Aurora's
Thrift fields in snake_case; `executor_data` is the Aurora client's job JSON, still to be
loaded. No I/O here.
"""
from __future__ import annotations

import enum

import attrs


class ContainerKind(enum.Enum):
    MESOS = "mesos"  # the Mesos containerizer on the agent's own filesystem (Aurora's default)
    MESOS_WITH_IMAGE = "mesos-with-image"  # ... with a filesystem image, mounted at `taskfs`
    DOCKER = "docker"  # the Docker containerizer; Thermos does not switch to the role's user there


class VolumeMode(enum.Enum):
    RW = 1
    RO = 2


@attrs.frozen(slots=True)
class JobKey:
    role: str  # the Unix user the task runs as (unless Docker)
    environment: str
    name: str

    def __str__(self) -> str:
        return f"{self.role}/{self.environment}/{self.name}"


@attrs.frozen(slots=True)
class Image:
    kind: str  # "docker" or "appc"
    name: str
    reference: str  # the Docker tag, or the appc image id


@attrs.frozen(slots=True)
class Volume:
    container_path: str
    host_path: str
    mode: VolumeMode


@attrs.frozen(slots=True)
class Container:
    kind: ContainerKind
    image: Image | None = None  # MESOS_WITH_IMAGE only
    volumes: tuple[Volume, ...] = ()  # MESOS and MESOS_WITH_IMAGE
    docker_image: str = ""  # DOCKER only
    docker_parameters: tuple[tuple[str, str], ...] = ()  # DOCKER only: (name, value) in order


@attrs.frozen(slots=True)
class Resources:
    """The task's `resources` set, summed by kind (Aurora sends one entry per kind and port)."""
    cpus: float = 0.0
    ram_mb: int = 0
    disk_mb: int = 0
    gpus: int = 0
    named_ports: tuple[str, ...] = ()  # the port names the scheduler assigned numbers to, sorted


@attrs.frozen(slots=True)
class Constraint:
    name: str  # the agent attribute
    values: tuple[str, ...] = ()  # a value constraint: one of these (none of them if negated)
    negated: bool = False
    limit: int | None = None  # a limit constraint: at most this many tasks per attribute value


@attrs.frozen(slots=True)
class FetcherUri:
    value: str
    extract: bool | None = None
    cache: bool | None = None
    output_file: str | None = None


@attrs.frozen(slots=True)
class PartitionPolicy:
    reschedule: bool
    delay_secs: int | None = None


@attrs.frozen(slots=True)
class SlaPolicy:
    kind: str  # "percentage", "count" or "coordinator"
    percentage: float | None = None
    count: int | None = None
    duration_secs: int | None = None
    coordinator_url: str | None = None
    status_key: str | None = None


@attrs.frozen(slots=True)
class AuroraTask:
    """One AssignedTask: who the scheduler gave which task, on which agent, with which ports."""
    task_id: str  # Aurora's task id, also the Mesos task id; binds {{thermos.task_id}}
    instance_id: int  # binds {{mesos.instance}}
    job: JobKey
    executor_name: str  # "AuroraExecutor" for Thermos
    executor_data: str  # the Aurora client's job JSON (a MesosJob, or a legacy MesosTaskInstance)
    slave_id: str = ""
    slave_host: str = ""  # the agent's hostname as offered; binds {{mesos.hostname}}
    assigned_ports: dict[str, int] = attrs.field(factory=dict)  # port name -> number
    container: Container = Container(ContainerKind.MESOS)
    resources: Resources = Resources()
    tier: str | None = None
    production: bool | None = None
    is_service: bool = False
    priority: int = 0
    max_task_failures: int = 0
    owner_user: str | None = None  # deprecated in Aurora: the role again
    contact_email: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()  # (key, value) in the order received
    constraints: tuple[Constraint, ...] = ()
    task_links: tuple[tuple[str, str], ...] = ()  # (anchor text, URL) in the order received
    fetcher_uris: tuple[FetcherUri, ...] = ()
    partition_policy: PartitionPolicy | None = None
    sla_policy: SlaPolicy | None = None
