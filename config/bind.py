"""Binding: one instance of a loaded job, for one run, into a `config.spec.JobSpec`.

Owns `bind()` (and `bound_job()`, which also gives the bound job as plain values): binds
`thermos.ports[NAME]`, `thermos.task_id`, `thermos.user`, `mesos.instance` and
`mesos.hostname` (the job's own `role`, `environment`, `cluster`, `name` bind themselves
through pystachio's struct scoping), expands every string, names every reference left
unbound and every port missing, checks the process names again now that their templates
are bound (`hello_{{mesos.instance}}` is a name, as in Aurora), and builds the plain, frozen
JobSpec the rest of Stoker runs (`_job_spec` ... `_lifecycle_spec`, one builder per spec
class). This is the one place where the job's defaults and the bound ports decide what
runs: which health check (none unless a `health` port or a shell check exists, see
`config.templates`; the ports are already resolved through the Announcer's portmap, so an
alias `health -> http` counts) and whether there is an HTTP lifecycle (only when its port is
bound). A job that configures an HTTP or TCP check that cannot run for want of a `health`
port gets a warning in `JobSpec.warnings` saying how to fix it.

Pure apart from pystachio: no I/O, no logging, never mutates its inputs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from pystachio import Ref

from config import spec
from config.errors import BindError, ConfigError, cut, join_problems
from config.loader import check_job
from config.order import order_graph, slot_trap
from config.portmap import port_names
from config.schema import HealthCheckConfig, HttpHealthChecker, Job, MesosContext, ThermosContext
from config.templates import expand, flatten, holds_templates, is_port_name, raw
from config.typed_tree import from_tree
from config.words import quoted

if TYPE_CHECKING:  # its module loads for a job that announces (`_announcer_spec`)
    from config.announcer import AnnouncerSpec

# The parts of a job a running task uses; an unbound reference anywhere else is ignored.
_USED_FIELDS = ("task", "health_check_config", "lifecycle", "role", "environment", "cluster",
                "name", "service", "max_task_failures", "announce")


@attrs.frozen(slots=True)
class BoundJob:
    tree: dict[str, Any]  # the bound Job as plain values, defaults filled in (pystachio's JSON)
    spec: spec.JobSpec


def bind(job: Any, *, instance: int, ports: dict[str, int], task_id: str, hostname: str,
         user: str, angle_refs: bool = True) -> spec.JobSpec:
    """Binds one instance of `job` for one run and returns the fully expanded JobSpec.

    `job` is what `load_job` or `decode` returned (validated); it is not changed. `ports`
    are the task's, already resolved through the Announcer's portmap. `angle_refs=False`
    leaves `<<ref>>` alone (Aurora's payload). Raises BindError listing every missing port
    and every unbound reference in the parts of the job the task uses, or ConfigError when a
    bound value has the wrong type or a bound process name is not a safe one.
    """
    return bound_job(job, instance=instance, ports=ports, task_id=task_id, hostname=hostname,
                     user=user, angle_refs=angle_refs).spec


def bound_job(job: Any, *, instance: int, ports: dict[str, int], task_id: str, hostname: str,
              user: str, angle_refs: bool = True) -> BoundJob:
    """`bind`, also giving the bound job as plain values (what `stoker inspect` prints)."""
    _check_ports(ports)
    plain = raw(job)
    if holds_templates(plain):  # else flattening would rebuild the same job (its types are checked below)
        job = flatten(job, angle_refs=angle_refs)
        plain = raw(job)
    key = _key(plain)  # the names are plain identifiers once the job is validated
    needed = port_names(job, angle_refs=False)  # flatten rewrote <<ref>> already, if asked to
    missing = [name for name in needed if name not in ports]
    bound = job.bind(thermos=ThermosContext(ports=dict(ports), task_id=task_id, user=user),
                     mesos=MesosContext(instance=instance, hostname=hostname)).bind(
        _runtime_values(needed, ports, task_id=task_id, user=user, instance=instance, hostname=hostname))
    tree, out = expand(bound)
    if out.problems:
        raise ConfigError(join_problems(f"job {key}", out.problems), out.problems)
    # A path is job.FIELD..., and none of the used fields is a list or a map.
    unbound = sorted({ref for path, ref in out.unbound if path.split(".")[1] in _USED_FIELDS})
    if missing or unbound:
        raise BindError(_bind_message(key, missing, unbound, ports), unbound, missing)
    final = from_tree(Job, tree).get()
    problems = check_job(final, bound=True)  # again: what still looks like a template is not one
    if problems:
        raise ConfigError(join_problems(f"job {key} (bound)", problems), problems)
    return BoundJob(tree=final, spec=_job_spec(final, instance=instance, ports=dict(ports),
                                               task_id=task_id))


def _runtime_values(needed: list[str], ports: dict[str, int], **values: Any) -> dict[Ref, Any]:
    """Each runtime reference the task can use, by its whole address, for a scope searched
    first: pystachio finds `thermos.ports[NAME]` in the contexts bound beside it by reading
    every entry of the ports' Map (a job of 3,000 ports took minutes to bind, each reference
    looked up as fast as a scope's other names); the contexts still answer anything else
    (the same values)."""
    found = {Ref.from_address(f"thermos.ports[{name}]"): ports[name] for name in needed
             if name in ports and is_port_name(name)}  # (no reference names another: checked once bound)
    found.update({Ref.from_address(f"thermos.{name}"): values[name] for name in ("task_id", "user")})
    found.update({Ref.from_address(f"mesos.{name}"): values[name] for name in ("instance", "hostname")})
    return found


def _check_ports(ports: dict[str, int]) -> None:
    bad = [f"{name}={quoted(number)}" for name, number in ports.items()
           if not isinstance(name, str) or isinstance(number, bool) or not isinstance(number, int)
           or not 0 < number < 65536]
    if bad:
        raise ConfigError("invalid ports (each must be a name and a number in 1..65535): "
                          + ", ".join(bad))


def _bind_message(key: str, missing: list[str], unbound: list[str], ports: dict[str, Any]) -> str:
    parts = []
    if missing:
        have = ", ".join(sorted(ports)) or "none"
        parts.append(f"missing ports: {', '.join(missing)[:400]} (assigned: {have[:400]})")
    if unbound:
        shown = [cut(ref, 80) for ref in unbound[:20]]
        more = f" and {len(unbound) - 20} more" if len(unbound) > 20 else ""
        parts.append("unbound template references: " + ", ".join(shown) + more)
    return f"job {key[:200]}: " + "; ".join(parts)


def _key(tree: dict[str, Any]) -> str:
    return "/".join(str(tree[k]) for k in ("cluster", "role", "environment", "name"))


def _job_spec(job: dict[str, Any], *, instance: int, ports: dict[str, int], task_id: str) -> spec.JobSpec:
    health = _health_spec(job["health_check_config"], ports)
    task = _task_spec(job["task"])
    return spec.JobSpec(
        role=job["role"], environment=job["environment"], cluster=job["cluster"], name=job["name"],
        instance=instance, task_id=task_id, task=task, health=health,
        lifecycle=_lifecycle_spec(job["lifecycle"], ports),
        service=job["service"], max_task_failures=job["max_task_failures"], ports=ports,
        announce=_announcer_spec(job["announce"]) if job.get("announce") else None,
        warnings=tuple(_health_warnings(job["health_check_config"], health) + _slot_warnings(task)),
    )


def _announcer_spec(announce: dict[str, Any]) -> AnnouncerSpec:
    """The job's `announce`, its module (`config.announcer`, an attrs class and its flags'
    parsers: 0.8 ms of CPU) imported only for a job that has one: a new config's planning
    child binds before its plan is sent, on the path to the first process."""
    from config.announcer import AnnouncerSpec

    return AnnouncerSpec.from_plain(announce)


def _slot_warnings(task: spec.TaskSpec) -> list[str]:
    """Ephemeral processes that take every max_concurrency slot before a process the task
    waits for (`config.order.slot_trap`): the task would wait for ever if they never end."""
    regular = [p for p in task.processes if not p.final]
    names = {p.name for p in regular}
    graph = order_graph(((p.name, False) for p in regular), [c for c in task.constraints if set(c) <= names])
    trap = slot_trap(((p.name, p.ephemeral) for p in regular), graph.deps, task.max_concurrency)
    return [trap.describe()] if trap is not None and not graph.problems else []


def _health_warnings(hc: dict[str, Any], health: spec.HealthSpec) -> list[str]:
    """A check the job asks for that cannot run: an explicit health_check_config whose HTTP
    (or TCP) checker has no `health` port. Aurora drops it silently; Stoker says so."""
    if health.kind is not spec.CheckKind.NONE or hc == HealthCheckConfig().get():
        return []  # a check runs (a shell check always does), or none was asked for
    checker = hc["health_checker"]
    kind = "a TCP" if "tcp" in checker else "an HTTP"
    return [f"job.health_check_config configures {kind} health check, but the task has no port named "
            "'health', so it is not health-checked: reference {{thermos.ports[health]}} in a process, "
            "or alias the port the service answers on, e.g. announce = Announcer(portmap={'health': 'http'})"]


def _task_spec(task: dict[str, Any]) -> spec.TaskSpec:
    resources = task.get("resources") or {}
    cpu = resources.get("cpu")
    return spec.TaskSpec(
        name=task["name"],
        processes=tuple(_process_spec(p) for p in task["processes"]),
        constraints=tuple(tuple(c.get("order", ())) for c in task["constraints"]),
        max_failures=task["max_failures"], max_concurrency=task["max_concurrency"],
        finalization_wait_secs=float(task["finalization_wait"]),
        disk_bytes=resources.get("disk"), ram_bytes=resources.get("ram"),
        cpu=None if cpu is None else float(cpu),
    )


def _process_spec(p: dict[str, Any]) -> spec.ProcessSpec:
    return spec.ProcessSpec(
        name=p["name"], cmdline=p["cmdline"], max_failures=p["max_failures"], daemon=p["daemon"],
        ephemeral=p["ephemeral"], min_duration_secs=float(p["min_duration"]), final=p["final"],
        logger=_logger_spec(p.get("logger")), logger_unset=p.get("logger") is None,
    )


def _logger_spec(logger: dict[str, Any] | None) -> spec.LoggerSpec:
    if logger is None:  # unset: file / standard, unless the executor's LoggerDefaults say otherwise
        return spec.LoggerSpec()
    destination, mode = spec.LogDestination(logger["destination"]), spec.LogMode(logger["mode"])
    rotate = logger.get("rotate")
    if rotate is None:  # unset: the spec's sizes, the same as RotatePolicy's defaults
        return spec.LoggerSpec(destination, mode)
    return spec.LoggerSpec(destination, mode, log_size_bytes=rotate["log_size"], backups=rotate["backups"])


def _health_spec(hc: dict[str, Any], ports: dict[str, int]) -> spec.HealthSpec:
    checker = hc["health_checker"]
    http = checker.get("http") or HttpHealthChecker().get()
    if "shell" in checker:
        kind = spec.CheckKind.SHELL
    elif "tcp" in checker and "health" in ports:
        kind = spec.CheckKind.TCP
    elif "health" in ports:
        kind = spec.CheckKind.HTTP
    else:
        kind = spec.CheckKind.NONE
    return spec.HealthSpec(
        kind=kind,
        initial_interval_secs=float(hc["initial_interval_secs"]),
        interval_secs=float(hc["interval_secs"]), timeout_secs=float(hc["timeout_secs"]),
        max_consecutive_failures=hc["max_consecutive_failures"],
        min_consecutive_successes=hc["min_consecutive_successes"],
        port=ports["health"] if kind in (spec.CheckKind.HTTP, spec.CheckKind.TCP) else None,
        endpoint=http["endpoint"], expected_response=http["expected_response"],
        expected_response_code=http["expected_response_code"],
        shell_command=checker["shell"]["shell_command"] if kind is spec.CheckKind.SHELL else "",
    )


def _lifecycle_spec(lifecycle: dict[str, Any], ports: dict[str, int]) -> spec.LifecycleSpec | None:
    http = lifecycle.get("http")
    if http is None or http["port"] not in ports:
        return None
    return spec.LifecycleSpec(
        port=ports[http["port"]],
        graceful_shutdown_endpoint=http["graceful_shutdown_endpoint"],
        shutdown_endpoint=http["shutdown_endpoint"],
        graceful_shutdown_wait_secs=float(http["graceful_shutdown_wait_secs"]),
        shutdown_wait_secs=float(http["shutdown_wait_secs"]),
    )
