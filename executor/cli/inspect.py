"""`stoker inspect`'s readable forms: a job from a config, and a task from a TaskInfo.

`describe_job` binds the job the way `stoker run` does (instance 0, a port for every name
the job requests, resolved through its Announcer's portmap, a task id, a host and a user,
here placeholders) and describes the JobSpec that comes out. So every default and every
decision (which health check, whether there is an HTTP lifecycle) comes from `config.bind`,
the code that makes them at run time, and a job without a `health` port says it has no
health check. Commands and the shell check's command are shown as written, with their
per-run templates (`{{thermos.ports[http]}}`) still in them; a port is shown by its name,
since its number is only known when the task starts.

`describe_launch` and `launch_json` show a TaskInfo's task exactly as `stoker executor`
would run it (`executor.mesos.launch`): task id, instance, host, user, the resolved ports
and the fully bound task, with what the executor's own flags (given to inspect as to the
executor) change in it: the --runner-logger-* defaults, who the processes and the shell
checks run as, the stop timeout, the disk check, the environment. Formatting only: no I/O.
"""
from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import attrs

from config.bind import bind
from config.plan import container_of
from config.portmap import job_portmap, port_names, requested_ports, resolve_portmap
from config.spec import MIB, CheckKind, HealthSpec, JobSpec, LifecycleSpec, LoggerSpec, LogMode, ProcessSpec
from config.words import printable_lines
from executor.mesos.launch import TaskLaunch
from healthcheck.loopback import ORDER as LOOPBACK_ORDER
from healthcheck.policy import HealthPolicy

if TYPE_CHECKING:
    from config.executorsettings import ExecutorSettings

# Stand-ins for what only the run knows; they never show (ports are shown by name).
TASK_ID = "<task_id>"
HOSTNAME = "<hostname>"
USER = "<user>"


def describe_job(job: Any) -> str:
    """`job` as load_job returned it (validated, flattened); raises ConfigError (BindError)
    when it cannot be bound, exactly as `stoker run` would."""
    portmap = job_portmap(job.get())
    names = requested_ports(port_names(job), portmap)
    given = {name: number for number, name in enumerate(names, start=1)}
    ports = resolve_portmap(portmap, given).ports
    spec = bind(job, instance=0, ports=ports, task_id=TASK_ID, hostname=HOSTNAME, user=USER)
    plain = job.get()  # as written, templates kept; pystachio's defaults filled in
    name_of = {number: name for name, number in given.items()}
    port_of = {number: _port_ref(name) for number, name in name_of.items()}
    lines = [f"job {spec.key}", *_job_lines(spec, plain), *_container_lines(plain), "  processes:"]
    for process, raw in zip(spec.task.processes, plain["task"]["processes"]):
        lines.append(f"    {process.name}  [{_flags(process)}]")
        lines.extend(f"      | {line}" for line in str(raw["cmdline"]).strip("\n").splitlines())
    lines.extend("  order " + " → ".join(chain) for chain in spec.task.constraints)
    lines.extend(_health_lines(spec.health, plain["health_check_config"], port_of))
    lines.append(_lifecycle_line(spec.lifecycle, plain.get("lifecycle") or {}, port_of))
    aliases = [f"{name} → {name_of.get(number, f'{number} (static)')}"  # a number in the portmap: static
               for name, number in sorted(ports.items()) if name not in given]
    lines.append("  ports: " + (", ".join(names) if names else "(none)")
                 + (f"; aliases: {', '.join(aliases)}" if aliases else ""))
    lines.extend(f"  warning: {warning}" for warning in spec.warnings)
    return printable_lines("\n".join(lines)) + "\n"


def _container_lines(plain: Any) -> list[str]:
    """The job's container, with an image: `stoker executor` runs the processes in it,
    `stoker run` on this host (and says so as it starts)."""
    container = container_of(plain)
    return [] if container is None else \
        [f"  container: {container} (`stoker run` runs the processes on this host, not in the image)"]


def describe_launch(launch: TaskLaunch, settings: ExecutorSettings) -> str:
    """A TaskInfo's task as `stoker executor` run with `settings` would run it, fully bound."""
    spec, tree = launch.spec.with_logger_defaults(settings.logger_defaults), launch.tree
    form = "Aurora AssignedTask" if launch.aurora else "Stoker task document"
    port_of = {number: str(number) for number in spec.ports.values()}
    lines = [f"task {spec.task_id} ({form}; job {spec.key})",
             f"  instance={spec.instance} hostname={launch.hostname} user={launch.user}",
             f"  runs as: {_runs_as(launch, settings)}",
             "  ports: " + (", ".join(f"{k}={v}" for k, v in sorted(spec.ports.items())) or "(none)"),
             f"  service={spec.service} max_task_failures={spec.max_task_failures}",
             *_job_lines(spec, tree)[1:], "  processes:"]
    for process in spec.task.processes:
        lines.append(f"    {process.name}  [{_flags(process)}]")
        lines.extend(f"      | {line}" for line in process.cmdline.strip("\n").splitlines())
    lines.extend("  order " + " → ".join(chain) for chain in spec.task.constraints)
    lines.extend(_health_lines(spec.health, tree["health_check_config"], port_of))
    lines.append(_lifecycle_line(spec.lifecycle, tree.get("lifecycle") or {}, port_of))
    lines.extend(_executor_lines(launch, settings))
    lines.extend(f"  warning: {warning}" for warning in spec.warnings)
    return printable_lines("\n".join(lines)) + "\n"


def _runs_as(launch: TaskLaunch, settings: ExecutorSettings) -> str:
    """Who the processes run as: `StokerExecutor._run_as`'s rules, for either user the
    executor may be."""
    aurora, override = launch.aurora, settings.execute_as_user
    if aurora is not None and aurora.docker:
        return "the executor's user, inside the Docker image (no switch, as with Thermos)"
    if settings.nosetuid:
        also = f", which wins over --execute-as-user={override}" if override else ""
        who = f"the executor's user (--nosetuid{also})"
    elif override is not None:
        who = f"{override} (--execute-as-user; the executor must be root, or be {override})"
    elif aurora is None:
        return "the executor's user"
    else:
        who = f"{aurora.role} when the executor is root (unless --nosetuid, or --execute-as-user names another)"
    image = aurora.task.container.image if aurora is not None and aurora.image else None
    if image is not None:
        return (f"{who}, inside its filesystem image ({image.kind} image {image.name}) through mesos-containerizer "
                "launch; a non-root executor fails it")
    chosen = settings.nosetuid or override is not None
    return who if chosen else f"{who}, else the executor's user"


def _executor_view(launch: TaskLaunch, settings: ExecutorSettings) -> dict[str, Any]:
    """What the executor's flags decide for this task besides the bound job."""
    preserve = settings.preserve_env
    return {
        "runs_as": _runs_as(launch, settings),
        "shell_checks_as": "the executor's user" if settings.nosetuid_health_checks else "the processes' user",
        "stop_timeout_secs": settings.stop_timeout_secs,
        "disk_check_secs": settings.disk_check_interval_secs if settings.disk_limit else None,
        "environment": ("the executor's whole environment, less the token" if preserve else
                        "PATH, MESOS_SANDBOX, MESOS_DIRECTORY, HOME, USER, LOGNAME")
                       + (" and the agent's MESOS_* variables" if settings.pass_agent_env else ""),
        "cgroups": settings.cgroups,
        "announces": launch.spec.announce is not None and settings.announcer_ensemble is not None,
    }


def _executor_lines(launch: TaskLaunch, settings: ExecutorSettings) -> list[str]:
    view = _executor_view(launch, settings)
    disk = "off" if view["disk_check_secs"] is None else f"checked every {view['disk_check_secs']} s"
    announce = "" if launch.spec.announce is None else \
        (" announces=yes" if view["announces"] else " announces=no (no --announcer-ensemble)")
    return [f"  executor: stop_timeout={view['stop_timeout_secs']} s disk_limit={disk} "
            f"cgroups={view['cgroups']}{announce}",
            f"    shell health checks run as {view['shell_checks_as']}; the processes' environment: "
            f"{view['environment']}"]


def launch_json(launch: TaskLaunch, settings: ExecutorSettings) -> dict[str, Any]:
    """`stoker inspect --task-info FILE --json`: one object."""
    spec = launch.spec.with_logger_defaults(settings.logger_defaults)
    return {
        "task_id": spec.task_id, "instance": spec.instance, "hostname": launch.hostname,
        "user": launch.user, "ports": dict(sorted(spec.ports.items())), "task": launch.tree["task"],
        "loggers": {p.name: _logger_json(p) for p in spec.task.processes},
        "health_check": _plain(spec.health),
        "lifecycle": _plain(spec.lifecycle) if spec.lifecycle is not None else None,
        "job": spec.key, "format": "aurora" if launch.aurora else "stoker", "warnings": list(spec.warnings),
        "executor": _executor_view(launch, settings),
    }


def _logger_json(process: ProcessSpec) -> dict[str, Any]:
    log = process.logger
    return {"destination": log.destination.value, "mode": log.mode.value, "log_size_bytes": log.log_size_bytes,
            "backups": log.backups, "from": "the executor's --runner-logger-* flags or defaults"
            if process.logger_unset else "the job"}


def _plain(value: Any) -> Any:
    return attrs.asdict(value, value_serializer=lambda _i, _f, v: v.value if isinstance(v, enum.Enum) else v)


def _port_ref(name: str) -> str:
    return "{{thermos.ports[" + name + "]}}"


def _job_lines(spec: JobSpec, plain: Any) -> list[str]:
    task = spec.task
    lines = [
        f"  service={spec.service} instances={plain['instances']} "
        f"max_task_failures={spec.max_task_failures}",
        f"  task {task.name}: max_failures={task.max_failures} "
        f"max_concurrency={task.max_concurrency} finalization_wait={task.finalization_wait_secs}",
    ]
    resources = plain["task"].get("resources")
    if resources:
        lines.append("  resources " + " ".join(f"{k}={v}" for k, v in sorted(resources.items())))
    return lines


def _flags(process: ProcessSpec) -> str:
    flags = [name for name in ("daemon", "ephemeral", "final") if getattr(process, name)]
    flags.append(f"max_failures={process.max_failures}")
    flags.append(f"min_duration={process.min_duration_secs}")
    if process.logger != LoggerSpec():
        log = process.logger
        rotate = f"({log.log_size_bytes // MIB} MiB x{log.backups})" if log.mode is LogMode.ROTATE else ""
        flags.append(f"logger={log.destination.value}/{log.mode.value}{rotate}"
                     + (" (--runner-logger-*)" if process.logger_unset else ""))
    return " ".join(flags)


def _health_lines(health: HealthSpec, plain: Any, port_of: dict[int, str]) -> list[str]:
    if health.kind is CheckKind.NONE:
        return ["  health: none (no port named health)"]
    port = port_of[health.port] if health.port is not None else "?"
    if health.kind is CheckKind.SHELL:
        what = f"shell: {plain['health_checker']['shell']['shell_command']}"
    elif health.kind is CheckKind.TCP:
        what = f"TCP connect to localhost:{port} ({LOOPBACK_ORDER})"
    else:
        body = f'body "{health.expected_response}"' if health.expected_response else "any body"
        code = f"HTTP {health.expected_response_code}" if health.expected_response_code else "any status"
        what = (f"HTTP GET http://localhost:{port}{health.endpoint} ({LOOPBACK_ORDER}), "
                f"expects {body}, {code}")
    policy = HealthPolicy.from_spec(health)
    passes = f"{policy.need} consecutive {'pass' if policy.need == 1 else 'passes'}"
    return [
        f"  health: {what}",
        f"    initial_interval_secs={health.initial_interval_secs} "
        f"interval_secs={health.interval_secs} timeout_secs={health.timeout_secs} "
        f"max_consecutive_failures={health.max_consecutive_failures} "
        f"min_consecutive_successes={health.min_consecutive_successes}",
        f"    failures of the first {policy.m} attempts ignored (grace); RUNNING after "
        f"{passes} within {policy.n} attempts",
    ]


def _lifecycle_line(lifecycle: LifecycleSpec | None, plain: Any, port_of: dict[int, str]) -> str:
    if lifecycle is None:
        http = plain.get("http")
        why = f"no port named {http['port']}" if http else "no HTTP lifecycle configured"
        return f"  lifecycle: none ({why})"
    base = f"http://localhost:{port_of[lifecycle.port]}"
    return (f"  lifecycle: on a kill, POST {base}{lifecycle.graceful_shutdown_endpoint}, wait up to "
            f"{lifecycle.graceful_shutdown_wait_secs} s; POST {base}{lifecycle.shutdown_endpoint}, "
            f"wait up to {lifecycle.shutdown_wait_secs} s; then SIGTERM, SIGKILL (localhost: {LOOPBACK_ORDER})")
