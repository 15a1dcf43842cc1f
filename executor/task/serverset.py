"""Whether a task announces, and what: Aurora's ServerSet member and its path, pure.

Owns `plan_announcement` (the one decision: a task announces when the settings name an
ensemble and its job has `announce = Announcer(...)`), the ServerSet path, port resolution
through the Announcer's portmap, the member's JSON, and the bound on the first announcement.
Aurora's rules (docs/aurora.md, "Service discovery" in the README):

- path: `<serverset path>/<role>/<environment>/<job name>` (serverset path `/aurora` by
  default); `Announcer.zk_path` replaces it only when custom paths are allowed, otherwise the
  task fails (Aurora: a fatal error naming `--announcer-allow-custom-serverset-path`);
- ports: the portmap (alias -> name or number) overlaid with the task's ports, aliases
  followed (`config.portmap`, the one resolver); a cycle is an error, a name that ends
  nowhere is left out;
- member: an ephemeral sequential znode `member_NNNNNNNNNN` under the path holding
  `{"serviceEndpoint": {"host", "port"}, "additionalEndpoints": {name: {"host", "port"}},
  "status": "ALIVE", "shard": instance}`; the primary endpoint is the primary port, port 0
  when the task has no such port (Aurora: "autoregistration"); every resolved port is an
  additional endpoint;
- bound: the first announcement must succeed within `initial_interval_secs +
  max_consecutive_failures * interval_secs` of the job's health check, else the task fails
  with "Creating Announcer Serverset timed out.".

Pure: no I/O, threads or clocks, and it never imports the ZooKeeper client, so deciding not
to announce costs nothing (tests/unit/test_announcer_imports.py checks it).
"""
from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping

import attrs

from config.announcer import AnnouncerSpec, node_name_ok, parse_serverset_path
from config.portmap import PortmapError, resolve_portmap
from config.spec import HealthSpec, JobSpec
from config.words import quoted
from config.zookeeper import AnnouncerSettings, ZkAuth

MEMBER_PREFIX = "member_"
STATUS_ALIVE = "ALIVE"
TIMED_OUT_REASON = "Creating Announcer Serverset timed out."


class AnnounceError(ValueError):
    """The job cannot be announced as configured (custom path not allowed, portmap cycle)."""


@attrs.frozen(slots=True)
class Endpoint:
    host: str
    port: int


@attrs.frozen(slots=True)
class Announcement:
    """Everything the announcer adapter needs for one task: where, what, and how long."""

    ensemble: str
    path: str  # the ServerSet: the member is created under it
    primary: Endpoint
    additional: Mapping[str, Endpoint]
    shard: int
    first_join_bound_secs: float
    auth: ZkAuth | None = None

    @property
    def data(self) -> bytes:
        return member_data(self.primary, self.additional, self.shard)

    @property
    def member_prefix(self) -> str:
        """The path the sequential member node is created at (ZooKeeper appends the number)."""
        return f"{self.path.rstrip('/')}/{MEMBER_PREFIX}"


def plan_announcement(job: JobSpec, announce: AnnouncerSpec | None,
                      settings: AnnouncerSettings | None, agent_host: str) -> Announcement | None:
    """The task's announcement, or None when it does not announce. Raises AnnounceError."""
    if settings is None or announce is None:
        return None
    if announce.zk_path is not None:
        if not settings.allow_custom_serverset_path:
            raise AnnounceError(
                f"Announcer.zk_path = {quoted(announce.zk_path)} needs the executor to be started with "
                "--announcer-allow-custom-serverset-path")
        try:
            path = parse_serverset_path(announce.zk_path)
        except ValueError as exc:
            raise AnnounceError(f"Announcer.zk_path: {exc}") from None
    else:
        path = serverset_path(settings.serverset_path, job.role, job.environment, job.name)
    try:
        ports = resolve_portmap(announce.portmap, job.ports).ports
    except PortmapError as exc:
        raise AnnounceError(f"Announcer.portmap: {exc}") from None
    primary, additional = make_endpoints(settings.hostname or agent_host, ports, announce.primary_port)
    return Announcement(ensemble=settings.ensemble, path=path, primary=primary, additional=additional,
                        shard=job.instance, first_join_bound_secs=first_join_bound_secs(job.health),
                        auth=settings.auth)


def serverset_path(root: str, role: str, environment: str, name: str) -> str:
    """`root/role/environment/name`; each of the three must be one plain node name."""
    for field, value in (("role", role), ("environment", environment), ("name", name)):
        if "/" in value or not node_name_ok(value):
            raise AnnounceError(f"the job's {field} {quoted(value)} cannot be a ZooKeeper node name")
    return posixpath.join(parse_serverset_path(root), role, environment, name)


def make_endpoints(host: str, ports: Mapping[str, int],
                   primary_port: str) -> tuple[Endpoint, dict[str, Endpoint]]:
    """The primary endpoint (port 0 when the task has no such port) and one per port."""
    additional = {name: Endpoint(host, port) for name, port in sorted(ports.items())}
    return Endpoint(host, ports.get(primary_port, 0)), additional


def member_data(primary: Endpoint, additional: Mapping[str, Endpoint], shard: int) -> bytes:
    """The member's JSON, as ServerSet readers (Finagle, Aurora's tools) parse it."""
    doc = {
        "serviceEndpoint": {"host": primary.host, "port": primary.port},
        "additionalEndpoints": {name: {"host": e.host, "port": e.port} for name, e in additional.items()},
        "status": STATUS_ALIVE,
        "shard": shard,
    }
    return json.dumps(doc).encode()


def first_join_bound_secs(health: HealthSpec) -> float:
    """How long the first announcement may take: Aurora's announcer timeout."""
    return health.initial_interval_secs + health.max_consecutive_failures * health.interval_secs
