"""A TaskInfo made into the task the executor runs, from either form of TaskInfo.data.

Owns `prepare_launch(task_info, ...)`: decodes TaskInfo.data (`config.aurora.taskdata`: Stoker's
JSON task document, or Aurora's Thrift AssignedTask), resolves the task's ports, binds the
templates and returns a `TaskLaunch`: the JobSpec, the bound job as plain values, the
TaskInfo's kill grace, and for Aurora's form the `AuroraLaunch` that says which role the task
runs as. `stoker executor` runs what it returns; `stoker inspect --task-info` prints it. Any
problem is one `LaunchError` whose message goes out with TASK_FAILED (REASON_TASK_INVALID).

Ports (docs/contract.md §3): Aurora's form takes the scheduler's `assignedPorts` overlaid on
the Announcer's portmap; Stoker's document takes `assigned_ports` when it covers every name
the task needs, else the TaskInfo's `ports` resource, and is resolved through the same
portmap. The Thrift decoder is imported only for Aurora's form. Pure apart from pystachio: no I/O,
no logging (the caller logs the launch's warnings).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from config.aurora.launch import AuroraLaunch, aurora_launch, bind_aurora
from config.aurora.task import AuroraTask
from config.aurora.taskdata import decode_task_data
from config.bind import BoundJob, bound_job
from config.document import TaskDocument
from config.errors import ConfigError
from config.portmap import PortmapError, job_portmap, port_names, requested_ports, resolve_portmap
from config.spec import JobSpec
from executor.mesos.errors import RemoteProtocolError
from executor.mesos.wire import ports_from_resources, task_data, task_kill_grace_secs


class LaunchError(Exception):
    """The task cannot start; the message goes out with TASK_FAILED (and `reason`)."""

    reason: str | None = "REASON_TASK_INVALID"


@attrs.frozen(slots=True)
class TaskLaunch:
    """What one LAUNCH runs."""

    spec: JobSpec
    tree: dict[str, Any]  # the bound job as plain values (pystachio's JSON shape)
    kill_grace_secs: float | None  # the TaskInfo's own kill_policy grace; None: not given
    hostname: str  # {{mesos.hostname}}
    user: str  # {{thermos.user}}
    aurora: AuroraLaunch | None = None  # None: Stoker's own task document

    @property
    def role(self) -> str:
        return self.spec.role


def prepare_launch(task_info: Mapping[str, Any], *, task_id: str, hostname: str,
                   framework_user: str | None) -> TaskLaunch:
    """The task in `task_info`, bound. `hostname` binds {{mesos.hostname}} for Stoker's
    document (Aurora's form uses its slaveHost); `framework_user` binds {{thermos.user}} for
    it, else the role. Raises LaunchError."""
    try:
        decoded = decode_task_data(task_data(task_info))
        grace = task_kill_grace_secs(task_info)
        if isinstance(decoded, AuroraTask):
            return _aurora(decoded, grace, hostname)
        return _document(decoded, task_info, task_id=task_id, hostname=hostname,
                         user=framework_user or str(decoded.job.role().get()), grace=grace)
    except (ConfigError, RemoteProtocolError) as exc:
        raise LaunchError(f"invalid task: {exc}") from exc


def _aurora(task: AuroraTask, grace: float | None, hostname: str) -> TaskLaunch:
    launch = aurora_launch(task)
    bound = bind_aurora(launch, fallback_hostname=hostname)
    return TaskLaunch(spec=bound.spec, tree=bound.tree, kill_grace_secs=grace,
                      hostname=task.slave_host or hostname, user=launch.role, aurora=launch)


def _document(document: TaskDocument, task_info: Mapping[str, Any], *, task_id: str, hostname: str,
              user: str, grace: float | None) -> TaskLaunch:
    portmap = job_portmap(document.job.get())
    try:
        names = requested_ports(port_names(document.job), portmap)
        given = resolve_ports(names, dict(document.assigned_ports), ports_from_resources(task_info))
        resolved = resolve_portmap(portmap, given)
    except PortmapError as exc:
        raise LaunchError(f"invalid task: Announcer.portmap: {exc}") from None
    bound: BoundJob = bound_job(document.job, instance=document.instance, ports=resolved.ports,
                                task_id=task_id, hostname=hostname, user=user)
    spec = attrs.evolve(bound.spec, warnings=tuple(resolved.warnings()) + bound.spec.warnings)
    return TaskLaunch(spec=spec, tree=bound.tree, kill_grace_secs=grace, hostname=hostname, user=user)


def resolve_ports(names: list[str], assigned: dict[str, int], offered: list[int]) -> dict[str, int]:
    """docs/contract.md §3: assigned_ports when it covers every name, else the names (sorted) take
    the TaskInfo's `ports` resource numbers in order."""
    if all(name in assigned for name in names):
        return {**assigned}
    missing = [n for n in sorted(names) if n not in assigned]
    free = [p for p in offered if p not in assigned.values()]
    if len(free) < len(missing):
        raise LaunchError(
            f"invalid task: too few ports: the task needs {len(names)} ({_names(sorted(names))}); "
            f"no port for {_names(missing[len(free):])} "
            f"(assigned_ports has {len(assigned)}, the ports resource offers {len(offered)})"
        )
    ports = dict(assigned)
    ports.update(zip(missing, free))
    return ports


def _names(names: list[str], most: int = 20, width: int = 64) -> str:
    """Port names for a message: each cut to `width`, at most `most` of them."""
    shown = [n if len(n) <= width else n[: width - 3] + "..." for n in names[:most]]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(shown) + more
