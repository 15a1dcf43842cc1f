"""What announcing in ZooKeeper needs from the job, and the checks of its flags' values.

Owns `AnnouncerSpec` (a job's `announce = Announcer(...)`: primary port, portmap, zk_path)
and the parsers of the ensemble and ServerSet path flags (`--announcer-ensemble`,
`--announcer-serverset-path`, `stoker run --announce`); each raises ValueError with a
message naming the value. Where and how a task announces once those flags are given
(`AnnouncerSettings`, the auth file's `ZkAuth`) is `config.zookeeper`'s: only a command that
announces loads it.

Pure: no I/O, and nothing here knows ZooKeeper's client library.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from config.words import quoted

DEFAULT_SERVERSET_PATH = "/aurora"

# HOST[:PORT], HOST a name, an IPv4 address or a bracketed IPv6 address, a zone id included
# (`[fe80::1%eth0]`): kazoo's hosts syntax, whose bracketed host `ipaddress` then checks. A
# zone id is of RFC 6874's unreserved characters, as interface names are: kazoo's `urlsplit`
# ends the host at a `?`, `#` or `@`, drops a tab and strips a blank (another host dialled,
# or the ensemble refused only at the join), and refuses what NFKC turns into one of those.
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9._~-]+)?\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?$")


@attrs.frozen(slots=True)
class AnnouncerSpec:
    """A job's `Announcer`: which port is primary, port aliases, and an optional own path."""

    primary_port: str = "http"
    # alias -> a port name or a static number (as text), Aurora's `{'aurora': 'http'}` default
    portmap: Mapping[str, str] = attrs.field(factory=lambda: {"aurora": "http"})
    zk_path: str | None = None

    @classmethod
    def from_plain(cls, announce: Mapping[str, Any]) -> AnnouncerSpec:
        """From the job's plain (already interpolated) `announce` value."""
        portmap = announce.get("portmap")
        return cls(primary_port=str(announce.get("primary_port") or "http"),
                   portmap={str(k): str(v) for k, v in portmap.items()} if portmap is not None
                   else {"aurora": "http"},
                   zk_path=announce.get("zk_path") or None)


def parse_ensemble(text: str) -> str:
    """`HOST:PORT[,HOST:PORT...][/chroot]`, as ZooKeeper clients take it (port default 2181),
    with the blanks around each HOST:PORT taken out: kazoo refuses `zk1:2181 ,zk2` (as it
    does a bracketed address that is not IPv6), and did so only when the task joined, an
    internal error failing it."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{quoted(text)} is not a ZooKeeper ensemble (HOST:PORT[,HOST:PORT...])")
    hosts, slash, chroot = text.strip().partition("/")
    items = [item.strip() for item in hosts.split(",")]
    for item in items:
        if not _host_port_ok(item):
            raise ValueError(f"{quoted(text)} is not a ZooKeeper ensemble: {quoted(item)} is not "
                             "HOST or HOST:PORT with a port in 1..65535")
    if slash:
        parse_serverset_path("/" + chroot)
    return ",".join(items) + slash + chroot


def _host_port_ok(item: str) -> bool:
    """HOST[:PORT] as kazoo reads it: a port in 1..65535, a bracketed host an IPv6 address,
    with a zone id or not (`ipaddress`, which kazoo's `urlsplit` asks too)."""
    match = _HOST_PORT.match(item)
    if not match or (match.group(2) is not None and not 0 < int(match.group(2)) < 65536):
        return False
    if match.group(1).startswith("["):
        import ipaddress  # only for a bracketed address

        try:
            ipaddress.IPv6Address(match.group(1)[1:-1])
        except ValueError:
            return False
    return True


def node_name_ok(name: str) -> bool:
    """Whether ZooKeeper takes `name` as one node name: not empty, not `.` or `..`, and none
    of the characters its path check refuses (U+0000–U+001F, U+007F–U+009F, U+D800–U+F8FF,
    U+FFF0–U+FFFF)."""
    return name not in ("", ".", "..") and not any(
        c <= "\x1f" or "\x7f" <= c <= "\x9f" or "\ud800" <= c <= "\uf8ff" or c >= "\ufff0" for c in name)


def parse_serverset_path(text: str) -> str:
    """An absolute ZooKeeper path, normalised: `/aurora/`, `//aurora` -> `/aurora`."""
    if not isinstance(text, str) or not text.startswith("/"):
        raise ValueError(f"{quoted(text)} is not an absolute ZooKeeper path (it must start with /)")
    names = [p for p in text.split("/") if p]
    bad = [p for p in names if not node_name_ok(p)]
    if bad:
        raise ValueError(f"{quoted(text)} is not a ZooKeeper path: {quoted(bad[0])} cannot be a node name")
    return "/" + "/".join(names)
