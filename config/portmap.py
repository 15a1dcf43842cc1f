"""Ports through the Announcer's portmap, as Aurora resolves them (docs/contract.md §3).

Owns the two sides of Aurora's rule, one for asking and one for resolving:

- `requested_ports(referenced, portmap)`: the names that need a number of their own
  (Aurora's client asks the scheduler for exactly these): every portmap entry that ends in a
  name, plus every referenced name that the portmap does not turn into a number;
- `resolve_portmap(portmap, ports)`: the portmap overlaid with the ports a task was given,
  each name followed through its aliases (`health -> http -> 31001`); a value that is a
  number is a static port; a cycle raises `PortmapError`; a name that ends nowhere is left
  out and listed as unmapped (Aurora logs "Task has unmapped port").

`port_ref_problems(job)`: the references into `thermos.ports` that are not
`{{thermos.ports[NAME]}}` (`loader.check_job` refuses them).

`port_names(job)`: the port names a task needs (docs/contract.md §3, §5), the NAMEs of
`{{thermos.ports[NAME]}}` referenced in a process cmdline or name, or in the shell health
check's command, plus the lifecycle port when it is not `health`. Decision: `health` is *never* added just because an HTTP (or TCP)
checker or the HTTP lifecycle is configured, because both are configured by default and
every job would then get a `health` port and a health check. A job is health-checked over
HTTP/TCP only when something references `{{thermos.ports[health]}}`, exactly as in Aurora,
where the `health` port exists only when a process asks for it. An explicitly chosen
lifecycle port other than `health` is a deliberate choice, so it is allocated.

A job without `announce` has an empty portmap; `Announcer()` has `{'aurora': 'http'}`
(`'{{primary_port}}'` with the default primary port). `job_portmap` reads it from a job.
Pure apart from pystachio (`port_names` expands the job): no I/O, no logging (the callers
log the unmapped names).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from config.errors import ConfigError, join_problems
from config.templates import PORT_REF, expand, normalize_angle_refs, refs_in
from config.words import texts


class PortmapError(ConfigError, ValueError):
    """The portmap cannot be resolved (a cycle of aliases)."""


@attrs.frozen(slots=True)
class ResolvedPorts:
    ports: dict[str, int]  # every name that ends in a number
    unmapped: tuple[tuple[str, str], ...] = ()  # (name, where it ends) for names that end nowhere

    def warnings(self) -> list[str]:
        """One sentence per unmapped name, as Aurora's executor logs them."""
        return [f"Task has unmapped port: {name} => {value} (no port of that name was assigned, "
                f"so {{{{thermos.ports[{name}]}}}} cannot be bound)" for name, value in self.unmapped]


def _static(value: str | int) -> str | int:
    """A portmap value: a number (a static port) or the name of another port."""
    if isinstance(value, int):
        return value
    text = value.strip()
    return int(text) if text.isascii() and text.isdigit() else value


def _follow(table: Mapping[str, str | int], name: str) -> str | int:
    seen = [name]
    value = table[name]
    while isinstance(value, str) and value in table:
        if value in seen:
            raise PortmapError(f"the aliases {' -> '.join(seen + [value])} form a cycle")
        seen.append(value)
        value = table[value]
    return value


def _table(portmap: Mapping[str, str | int], ports: Mapping[str, int] | None = None) -> dict[str, str | int]:
    table: dict[str, str | int] = {str(name): _static(value) for name, value in portmap.items()}
    table.update(ports or {})
    return table


def resolve_portmap(portmap: Mapping[str, str | int], ports: Mapping[str, int]) -> ResolvedPorts:
    """`portmap` overlaid with `ports`, every alias followed. Raises PortmapError on a cycle."""
    table = _table(portmap, ports)
    resolved: dict[str, int] = {}
    unmapped: list[tuple[str, str]] = []
    for name in sorted(table):
        value = _follow(table, name)
        if isinstance(value, int):
            resolved[name] = value
        else:
            unmapped.append((name, value))
    return ResolvedPorts(ports=resolved, unmapped=tuple(unmapped))


def requested_ports(referenced: Iterable[str], portmap: Mapping[str, str | int]) -> list[str]:
    """The names that need a number (Aurora's `AuroraConfig.ports()`), sorted."""
    table = _table(portmap)
    final = {name: _follow(table, name) for name in table}
    wanted = {value for value in final.values() if isinstance(value, str)}
    for name in referenced:
        value = final.get(name, name)
        if isinstance(value, str):
            wanted.add(value)
    return sorted(wanted)


def job_portmap(job: Mapping[str, Any]) -> dict[str, str]:
    """The portmap of a job as plain, expanded values (`flatten(job).get()`, where
    `{{primary_port}}` is already the primary port): its Announcer's, else empty. The schema
    always fills an Announcer's portmap (its default is `{'aurora': '{{primary_port}}'}`)."""
    announce = job.get("announce")
    if not isinstance(announce, Mapping):
        return {}
    return {str(name): str(value) for name, value in announce["portmap"].items()}


def port_refs(text: str) -> list[str]:
    """The NAMEs of `{{thermos.ports[NAME]}}` in `text`."""
    return [m.group(1) for m in map(PORT_REF.match, refs_in(text)) if m]


def port_ref_problems(job: dict[str, Any]) -> list[str]:
    """Each reference into `thermos.ports` in the job's text (plain values) that is not a port
    reference, `{{thermos.ports[NAME]}}`, as a sentence naming its field (`loader.check_job`)."""
    problems = []
    for path, text in texts(job, "job"):
        for ref in refs_in(text):
            if _is_port_scope(ref) and not PORT_REF.match(ref):
                problems.append(f"{path} uses {{{{{ref}}}}}, which is not a port reference; "
                                "write {{thermos.ports[NAME]}}")
    return problems


def _is_port_scope(ref: str) -> bool:
    return ref == "thermos.ports" or ref.startswith(("thermos.ports.", "thermos.ports["))


def port_names(job: Any, *, angle_refs: bool = True) -> list[str]:
    """Sorted, unique port names the job's task needs (see the module docstring for why)."""
    tree, out = expand(job)
    if tree is None:
        raise ConfigError(join_problems("invalid job", out.problems), out.problems)
    return port_names_of_tree(tree, angle_refs=angle_refs)


def port_names_of_tree(tree: dict[str, Any], *, angle_refs: bool = True) -> list[str]:
    """The port names of a validated job, expanded (what `expand` gives for it)."""
    names: set[str] = set()
    for text in _texts_naming_ports(tree):
        names.update(port_refs(normalize_angle_refs(text) if angle_refs else text))
    http = tree["lifecycle"].get("http")  # DisableLifecycle has none
    if http is not None and http["port"] != "health":
        names.add(http["port"])
    return sorted(names)


def _texts_naming_ports(tree: dict[str, Any]) -> Iterable[str]:
    for process in tree["task"]["processes"]:
        yield process["name"]
        yield process["cmdline"]
    shell = tree["health_check_config"]["health_checker"].get("shell")
    if shell is not None:
        yield shell["shell_command"]
