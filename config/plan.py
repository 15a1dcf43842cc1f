"""A job planned for `stoker run`: loaded, checked, its ports chosen and its templates bound
once, with a stand-in task id that each attempt replaces with its own.

`plan_job` does what the Aurora client and the scheduler would before a task starts: loads
the config with the `--bind` values, refuses a reference left unbound (`check_bound`),
chooses the ports (a free loopback port, or the `--port` number, for each name the job
requests, resolved through its Announcer's portmap) and binds one instance into a
`JobSpec`. The task id is the one runtime value that changes between attempts; the plan is
bound with a stand-in of the same shape (`NAME-INSTANCE-8 hex digits`, so a process name
made from it passes the same checks), and `JobPlan.spec_for` puts each attempt's id
wherever the stand-in landed. That is also what lets `executor/local/plancache.py` keep a
plan for the next run of an unchanged config without loading pystachio again.

Reads the config files (through `config.loader`); the ports come from the caller's
`allocate`, so nothing here opens a socket.
"""
from __future__ import annotations

import enum
import gc
import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from config.errors import ConfigError, in_file
from config.spec import JobSpec
from config.words import a_kind, did_you_mean, loggable, quoted

__all__ = ["Allocate", "JobPlan", "container_of", "container_warnings", "load_frozen", "open_problem", "plan_job",
           "replace_text", "task_id"]

# Free loopback ports for the names not given with --port: (names, fixed) -> every number.
Allocate = Callable[[list[str], Mapping[str, int]], dict[str, int]]


@attrs.frozen(slots=True, kw_only=True)
class JobPlan:
    """What every attempt of one `stoker run` shares."""

    spec: JobSpec  # bound with `stand_in` as {{thermos.task_id}}
    stand_in: str
    allocated: tuple[str, ...]  # the ports chosen free (not given with --port), by name
    port_warnings: tuple[str, ...]  # portmap names that end nowhere, in Aurora's words
    # what Aurora's scheduler would do with the job that `stoker run` does not (its other
    # instances, its cron schedule), each a sentence the run prints before it starts
    notes: tuple[str, ...] = ()
    # what the run warns about before it starts, each a `run_warning` (an instance the job
    # does not have, the parts of its container that are not used)
    warnings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ports(self) -> dict[str, int]:
        return dict(self.spec.ports)

    def spec_for(self, task_id: str) -> JobSpec:
        """The spec of an attempt whose task id is `task_id`."""
        return replace_text(self.spec, self.stand_in, task_id)


def task_id(name: str, instance: int) -> str:
    """A fresh task id, `NAME-INSTANCE-` and 8 random hex digits."""
    return f"{name}-{instance}-{os.urandom(4).hex()}"


def _allocated(allocate: Allocate, names: list[str], fixed: Mapping[str, int], named: str,
               key: str) -> dict[str, int]:
    """`allocate`'s ports; a ConfigError that says why none could be had (every local port
    in use, on 127.0.0.1 or ::1 too, or no descriptor left), not a planning child's crash."""
    try:
        return allocate(names, fixed)
    except OSError as exc:
        wanted = ", ".join(n for n in names if n not in fixed)
        raise ConfigError(f"{named}: job {key}: no free loopback port could be chosen for {wanted}: "
                          f"{exc.strerror or exc}") from None


def load_frozen() -> None:
    """Loads what `plan_job` runs a config with (`config.bind` imports the loader, the
    templates, the schema and pystachio) with the collector off, then freezes what they
    made: loaded with it on, they took 7 young collections, and the plan an 8th (0.5-0.8 ms
    of a first run's planning child, on its path), each walking classes and functions that
    live as long as the process. The collector is on again, its count at zero, before the config's
    code runs: the config's own garbage (cycles holding files) is collected as before. For
    a process that ends once it planned (the planning child): a frozen object is never
    collected, so garbage made before the call stays."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        import config.bind  # noqa: F401  (loaded here, not at plan_job's first line)
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def plan_job(config: str, jobkey: str | None, bindings: tuple[tuple[str, str], ...], *,
             instance: int, fixed_ports: Mapping[str, int], hostname: str, user: str,
             allocate: Allocate, sources: dict[str, str] | None = None) -> JobPlan:
    """Load, check, choose the ports and bind; raises ConfigError (BindError) naming the
    file, the job and the problem. `sources`, if given, receives the text of every file the
    load read, by path."""
    from config.bind import bind
    from config.loader import check_bound, job_key, load_job
    from config.portmap import job_portmap, port_names, requested_ports, resolve_portmap

    job = load_job(config, jobkey, bindings, sources=sources)
    named = quoted(config)  # as errors name a path they were given
    check_bound(job, named)
    plain = job.get()
    portmap = job_portmap(plain)
    referenced = port_names(job)
    names = requested_ports(referenced, portmap)
    key = job_key(job)  # once: each is the job's scopes made and four fields expanded in them
    _check_fixed_ports(fixed_ports, sorted(set(names) | set(referenced) | set(portmap)), key)
    resolved = resolve_portmap(portmap, _allocated(allocate, names, fixed_ports, named, key))
    stand_in = task_id(key.rsplit("/", 1)[-1], instance)
    try:
        spec = bind(job, instance=instance, ports=resolved.ports, task_id=stand_in, hostname=hostname, user=user)
    except ConfigError as exc:  # `{{thermos.nope}}`, a bound value of the wrong type: name the file
        raise in_file(exc, named) from None
    return JobPlan(spec=spec, stand_in=stand_in,
                   allocated=tuple(sorted(n for n in names if n not in fixed_ports)),
                   port_warnings=tuple(resolved.warnings()),
                   notes=scheduler_notes(plain, key, instance),
                   warnings=instance_warnings(plain, key, instance) + container_warnings(plain))


def scheduler_notes(job: Mapping[str, Any], key: str, instance: int) -> tuple[str, ...]:
    """What `stoker run` does not do of what Aurora's scheduler does with `job` (its plain
    values), as sentences: it runs one instance (`--instance N`, 0 by default), and it has
    no cron: a `cron_schedule` job runs once, now (then as the service rules say). An
    instance the job does not have is a warning instead (`instance_warnings`)."""
    notes = []
    instances = job.get("instances")
    if isinstance(instances, int) and instances > 1 and 0 <= instance < instances:
        notes.append(f"job {key} has instances = {instances}; this run is instance {instance} "
                     "alone (one `stoker run --instance N` per instance)")
    schedule = job.get("cron_schedule")
    if isinstance(schedule, str) and schedule.strip():
        notes.append(f"job {key} has cron_schedule = {quoted(schedule)}; stoker run has no cron: it "
                     "runs the job once, now, not on that schedule")
    return tuple(notes)


def instance_warnings(job: Mapping[str, Any], key: str, instance: int) -> tuple[str, ...]:
    """`--instance N` of a job without instance N (`instances = 3`, `--instance 3`): Aurora's
    scheduler would never run it; `stoker run` runs it anyway and warns."""
    instances = job.get("instances")
    if not isinstance(instances, int) or 0 <= instance < instances:
        return ()
    has = f"instances 0 to {instances - 1}" if instances > 1 else f"instances = {instances}"
    return (f"job {key} has {has}: Aurora's scheduler would run no instance {instance}; running it here anyway",)


def container_of(job: Mapping[str, Any]) -> str | None:
    """The job's `container` (its plain values), in words: `Docker image python:3.11` for
    Aurora's Docker containerizer (`Docker(...)`, or `Container(docker=Docker(...))`),
    `Mesos, Docker image NAME:TAG` or `Mesos, appc image NAME (id ID)` for a Mesos
    filesystem image; None for none, or a Mesos container without an image (the agent's own
    filesystem, as here). Names are escaped (`loggable`): one line, whatever they hold."""
    container = job.get("container")
    if not isinstance(container, Mapping):
        return None
    docker = container.get("docker", container)  # Container(docker=Docker(...)), the older form
    if isinstance(docker, Mapping) and isinstance(docker.get("image"), str):
        return f"Docker image {loggable(docker['image'])}"
    image = container.get("image")
    if not isinstance(image, Mapping):
        return None
    if "tag" in image:
        return f"Mesos, Docker image {loggable(str(image.get('name')) + ':' + str(image['tag']))}"
    return f"Mesos, appc image {loggable(str(image.get('name')))} (id {loggable(str(image.get('image_id')))})"


def container_warnings(job: Mapping[str, Any]) -> tuple[str, ...]:
    """`stoker run` runs a job's processes on this host whatever its container (README
    "stoker run"): one line for each part of it that is not used there: an image (what the
    processes find here, binaries, paths, users, may not be what it holds), the volumes of a
    Mesos container without one (not mounted), Docker's `parameters` (no `docker run`)."""
    container = job.get("container")
    if not isinstance(container, Mapping):
        return ()
    docker = container.get("docker", container)  # as in `container_of`
    volumes = _listed(container.get("volumes"),
                      lambda v: f"{v.get('container_path')} (host {v.get('host_path')}, {v.get('mode')})")
    parameters = _listed(docker.get("parameters") if isinstance(docker, Mapping) else None,
                         lambda p: f"{p.get('name')}={p.get('value')}")
    lines = []
    if (words := container_of(job)) is not None:
        lines.append(f"the job's container ({words}) is not used: its processes run on this host, not in the image")
    elif volumes:
        lines.append(f"the job's container volumes are not mounted (its processes see this host's paths): {volumes}")
    if parameters:
        lines.append(f"the job's Docker parameters are ignored (there is no docker run here): {parameters}")
    return tuple(lines)


def _listed(items: object, shape: Callable[[Mapping[str, Any]], str]) -> str:
    """`items` (plain structs) each in `shape`, comma-separated and escaped (`loggable`: one
    line, whatever they hold); empty for none."""
    if not isinstance(items, (list, tuple)):
        return ""
    return ", ".join(loggable(shape(item)) for item in items if isinstance(item, Mapping))


def open_problem(sources: Mapping[str, str]) -> str | None:
    """Why the files one load read (path → text) may give another result another time
    (`config.purity`: an import, a builtin that reads the world, ...), or None when their
    text alone decides it. A JSON document is data: never open."""
    from config.purity import closed_problem
    from config.schema import SCHEMA_NAMESPACE

    return closed_problem(((path, text) for path, text in sources.items() if not _is_json(text)),
                          SCHEMA_NAMESPACE)


def _is_json(text: str) -> bool:
    text = text.removeprefix("\ufeff")  # a BOM, as the loader reads it (config/loader.py)
    if not text.lstrip().startswith("{"):
        return False
    import json

    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _check_fixed_ports(fixed: Mapping[str, int], names: list[str], key: str) -> None:
    """Every `--port NAME=NUM` must name a port the job uses: a typo is an error, not a
    port silently left unused."""
    for name in sorted(set(fixed) - set(names)):
        close = did_you_mean(name, names)
        close = f" ({close[2:]})" if close.startswith("; did you mean") else ""
        uses = f"; its ports: {', '.join(names)}" if names else "; it uses no ports"
        raise ConfigError(f"--port {name}={fixed[name]}: job {key} has no port named "
                          f"{quoted(name)}{close}{uses}")


def replace_text(value: Any, old: str, new: str) -> Any:
    """`value` with `old` replaced by `new` in every string it holds: attrs instances,
    tuples, lists and dicts that hold it are rebuilt, the rest (numbers, enums, None, and
    whatever does not hold it) kept as it is."""
    if isinstance(value, str):
        return value.replace(old, new)
    if value is None or isinstance(value, (bool, int, float, enum.Enum)):
        return value
    if isinstance(value, (tuple, list)):
        items = [replace_text(v, old, new) for v in value]
        same = all(a is b for a, b in zip(items, value))
        return value if same and isinstance(value, tuple) else type(value)(items)
    if isinstance(value, Mapping):
        pairs = [(replace_text(k, old, new), replace_text(v, old, new)) for k, v in value.items()]
        same = all(a is k and b is v for (a, b), (k, v) in zip(pairs, value.items()))
        return value if same else dict(pairs)
    if attrs.has(type(value)):
        changes = {}
        for f in attrs.fields(type(value)):
            current = getattr(value, f.name)
            replaced = replace_text(current, old, new)
            if f.init and replaced is not current:
                changes[f.alias] = replaced
        return attrs.evolve(value, **changes) if changes else value
    raise TypeError(f"replace_text: cannot rebuild {a_kind(value)}")
