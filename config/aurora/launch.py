"""An Aurora AssignedTask made into the job Stoker runs, as Thermos' executor makes it.

Owns `aurora_launch(task)`: checks that the task is for Thermos (`executorConfig.name` is
`AuroraExecutor`), loads the Aurora client's job JSON from `executorConfig.data` — a Job without
`update_config` and `instances` (what every client since 0.7 sends), or the legacy
`MesosTaskInstance` (it has an `instance` key) — validates it like a `.aurora` file, and
resolves the task's ports as Thermos does: the Announcer's portmap overlaid with
`assignedPorts`, aliases followed (`config.portmap`); a lifecycle port the task does not
have means no HTTP lifecycle, as in Thermos (a warning). And `bind_aurora(launch)`: binds
`mesos.instance` = instanceId, `mesos.hostname` = slaveHost, `thermos.task_id` = taskId,
`thermos.user` = the role and the resolved `thermos.ports`, with Aurora's words for what is
left: "Unexpected unbound refs: ...".

`<<ref>>` is not rewritten here: Aurora never treated it as a template, so a job's
`cat <<EOF>>file` runs as written. Every problem is a `TaskDataError` (or the `ConfigError`
of the job's validation) whose message names the field. Pure apart from pystachio: no I/O,
no logging; the unmapped-port lines are returned as warnings for the caller to log.
"""
from __future__ import annotations

import json
from typing import Any

import attrs

from config.aurora.errors import TaskDataError
from config.aurora.task import AuroraTask, ContainerKind
from config.bind import BoundJob, bound_job
from config.errors import BindError, ConfigError, cut
from config.loader import prepare_job
from config.portmap import PortmapError, job_portmap, resolve_portmap
from config.schema import AURORA_EXECUTOR_NAME, Job, LifecycleConfig, MesosTaskInstance
from config.templates import refs_in
from config.typed_tree import from_tree
from config.words import json_half_pair, quoted, strings

DATA_FIELD = "task.executorConfig.data"
# The legacy payload names no cluster; its job key shows this instead.
LEGACY_CLUSTER = "-"


@attrs.frozen(slots=True)
class AuroraLaunch:
    """An Aurora task ready to bind: its job (validated, flattened) and its resolved ports."""

    task: AuroraTask
    job: Any  # a pystachio Job; runtime references (thermos.*, mesos.*) still unbound
    ports: dict[str, int]  # assignedPorts overlaid on the Announcer's portmap, aliases followed
    warnings: tuple[str, ...] = ()  # unmapped portmap names, as Aurora's executor logs them
    legacy: bool = False  # executorConfig.data was a MesosTaskInstance

    @property
    def role(self) -> str:
        """The job's role: the Unix user Thermos runs the task as (unless Docker)."""
        return self.task.job.role

    @property
    def image(self) -> bool:
        """The task's container is a Mesos filesystem image, mounted at `taskfs` by the agent:
        its processes run inside it through `mesos-containerizer launch` (docs/aurora.md §13)."""
        return self.task.container.kind is ContainerKind.MESOS_WITH_IMAGE and self.task.container.image is not None

    @property
    def docker(self) -> bool:
        """The agent runs the executor inside the task's Docker image (no user switch)."""
        return self.task.container.kind is ContainerKind.DOCKER


def _fail(task: AuroraTask, problem: str) -> TaskDataError:
    return TaskDataError(f"Aurora task {cut(task.task_id, 120)}: {problem}")


def aurora_launch(task: AuroraTask) -> AuroraLaunch:
    """The job and ports of `task`; raises TaskDataError or ConfigError naming the problem."""
    if task.executor_name != AURORA_EXECUTOR_NAME:
        raise _fail(task, f"task.executorConfig.name is {quoted(task.executor_name)}, not "
                          f"{quoted(AURORA_EXECUTOR_NAME)}: Stoker runs Thermos tasks, whose executor config "
                          "carries the Aurora client's job JSON")
    doc = _job_json(task)
    legacy = "instance" in doc
    job = _legacy_job(task, doc) if legacy else _modern_job(task, doc)
    try:
        flat = prepare_job(job, DATA_FIELD, angle_refs=False)
    except ConfigError as exc:
        raise _fail(task, str(exc)) from None
    try:
        resolved = resolve_portmap(job_portmap(flat.get()), task.assigned_ports)
    except PortmapError as exc:
        raise _fail(task, f"Announcer.portmap: {exc}") from None
    flat, dropped = _without_unassigned_lifecycle(flat, resolved.ports)
    return AuroraLaunch(task=task, job=flat, ports=resolved.ports, warnings=tuple(resolved.warnings()) + dropped,
                        legacy=legacy)


def _without_unassigned_lifecycle(job: Any, ports: dict[str, int]) -> tuple[Any, tuple[str, ...]]:
    """Thermos' `HttpLifecycleManager.wrap`: a lifecycle whose port the task does not have is
    no lifecycle. Aurora's client asks the scheduler only for the ports the processes and the
    Announcer's portmap name, so a port named only by the lifecycle is never assigned; Thermos
    runs such a task and stops it without the endpoints, and so does Stoker, with a warning.
    (`health`, the default, is left to `config.bind`, which skips it silently as Thermos does.)"""
    http = job.get()["lifecycle"].get("http")
    if http is None or http["port"] == "health" or http["port"] in ports:
        return job, ()
    port = cut(str(http["port"]), 60)
    warning = (f"job.lifecycle.http.port is {quoted(port)}, a port the task does not have (Aurora's client asks the "
               "scheduler only for the ports the processes and the Announcer's portmap name), so the task has "
               "no HTTP lifecycle: a kill goes straight to SIGTERM, as with Thermos; to have it, reference "
               f"{{{{thermos.ports[{port}]}}}} in a process or alias it: Announcer(portmap={{{quoted(port)}: 'http'}})")
    return job(lifecycle=LifecycleConfig()), (warning,)


def _job_json(task: AuroraTask) -> dict[str, Any]:
    try:
        doc = json.loads(task.executor_data)
    except (ValueError, RecursionError) as exc:
        from config.document import long_integer_in  # (only here: an integer too long, named)

        named = isinstance(exc, ValueError) and long_integer_in(task.executor_data, "job")
        if named:
            raise _fail(task, f"{DATA_FIELD}: {named}") from None
        raise _fail(task, f"{DATA_FIELD} is not JSON (Could not deserialize thermos config: {exc})") from None
    if not isinstance(doc, dict):
        raise _fail(task, f"{DATA_FIELD} must be a JSON object (the job), not {type(doc).__name__}")
    if (half := json_half_pair(doc, "job")) is not None:
        raise _fail(task, f"{DATA_FIELD}: {half}")
    return doc


def _unknown_keys(task: AuroraTask, doc: dict[str, Any], struct: Any) -> None:
    unknown = sorted(set(doc) - set(struct.TYPEMAP))
    if unknown:
        shown = ", ".join(quoted(cut(str(key), 60)) for key in unknown[:20])
        raise _fail(task, f"the {struct.__name__} in {DATA_FIELD} has keys Stoker's schema does not know: "
                          f"{shown} (a newer Aurora client?); it knows {', '.join(sorted(struct.TYPEMAP))}")


def _modern_job(task: AuroraTask, doc: dict[str, Any]) -> Any:
    """The Job the client sent (without update_config and instances)."""
    _unknown_keys(task, doc, Job)
    try:
        return from_tree(Job, doc, "job")
    except ConfigError as exc:
        raise _fail(task, f"{DATA_FIELD}: {exc}") from None


def _legacy_job(task: AuroraTask, doc: dict[str, Any]) -> Any:
    """A MesosTaskInstance as a Job: its fields, the job name from the task's key, and
    `{{instance}}` bound as in the instance's own scope."""
    _unknown_keys(task, doc, MesosTaskInstance)
    try:
        instance = from_tree(MesosTaskInstance, doc, "instance").get()
    except ConfigError as exc:
        raise _fail(task, f"{DATA_FIELD}: {exc}") from None
    clusters = sorted({ref for text in strings(doc) for ref in refs_in(text) if ref.split(".")[0] == "cluster"})
    if clusters:
        shown = " ".join("{{" + ref + "}}" for ref in clusters)
        raise _fail(task, f"Unexpected unbound refs: {shown}. "
                          "The legacy MesosTaskInstance has no cluster.")
    tree = {key: value for key, value in doc.items() if key != "instance"}
    tree.update(name=task.job.name, cluster=LEGACY_CLUSTER)
    return from_tree(Job, tree, "job").bind(instance=instance["instance"])


def bind_aurora(launch: AuroraLaunch, fallback_hostname: str = "localhost") -> BoundJob:
    """The task bound as Thermos binds it; raises ConfigError in Aurora's words."""
    task = launch.task
    try:
        bound = bound_job(launch.job, instance=task.instance_id, ports=launch.ports, task_id=task.task_id,
                          hostname=task.slave_host or fallback_hostname, user=launch.role, angle_refs=False)
    except BindError as exc:
        raise _fail(task, _unbound_message(exc, launch)) from None
    except ConfigError as exc:
        raise _fail(task, str(exc)) from None
    spec = attrs.evolve(bound.spec, warnings=launch.warnings + bound.spec.warnings)
    return BoundJob(tree=bound.tree, spec=spec)


def _unbound_message(exc: BindError, launch: AuroraLaunch) -> str:
    parts = []
    ports = {"{{thermos.ports[" + name + "]}}" for name in exc.missing_ports}  # Aurora binds these with dummies
    unbound = [ref for ref in exc.unbound if ref not in ports]
    if unbound:
        shown = " ".join(cut(ref, 80) for ref in unbound[:20])
        parts.append(f"Unexpected unbound refs: {shown}. Make sure you are not nesting template variables.")
    if exc.missing_ports:
        assigned = ", ".join(f"{k}={v}" for k, v in sorted(launch.task.assigned_ports.items())) or "none"
        resolved = ", ".join(f"{k}={v}" for k, v in sorted(launch.ports.items())) or "none"
        parts.append(f"the task requires unbound ports: {', '.join(exc.missing_ports)} (the scheduler "
                     f"assigned {cut(assigned, 300)}; through the Announcer's portmap: {cut(resolved, 300)})")
    return " ".join(parts)
