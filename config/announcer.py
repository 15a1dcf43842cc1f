"""What announcing in ZooKeeper needs from the job and the settings, as plain checked values.

Owns `AnnouncerSpec` (a job's `announce = Announcer(...)`: primary port, portmap, zk_path),
`AnnouncerSettings` (Aurora's `--announcer-*` flags, or `stoker run --announce`), `ZkAuth`
(the `--announcer-zookeeper-auth-config` file in Aurora's format) and the parsers that check
them. Every parser raises ValueError with a message naming the value (and, for the auth
file, the file and the field); a credential is never part of a message or a repr.

Pure: no I/O (the settings read the auth file and hand its text to `parse_zk_auth`), and
nothing here knows ZooKeeper's client library.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

DEFAULT_SERVERSET_PATH = "/aurora"
PERMISSIONS = ("read", "write", "create", "delete", "admin")

# HOST[:PORT], HOST a name, an IPv4 address or a bracketed IPv6 address (kazoo's hosts syntax).
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?$")


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


@attrs.frozen(slots=True)
class ZkCredential:
    """One `auth` entry: added to the ZooKeeper session (`addauth SCHEME CREDENTIAL`)."""

    scheme: str
    credential: str = attrs.field(repr=False)


@attrs.frozen(slots=True)
class ZkPermissions:
    read: bool = False
    write: bool = False
    create: bool = False
    delete: bool = False
    admin: bool = False


@attrs.frozen(slots=True)
class ZkAccess:
    """One `acl` entry: who may do what with the nodes the announcer creates."""

    scheme: str
    credential: str = attrs.field(repr=False)  # digest: USER:PASSWORD, hashed when applied
    permissions: ZkPermissions = ZkPermissions()


@attrs.frozen(slots=True)
class ZkAuth:
    """The auth file: credentials for the session and the ACL of the created nodes."""

    source: str  # the file it came from, for messages
    auth: tuple[ZkCredential, ...] = ()
    acl: tuple[ZkAccess, ...] = ()


@attrs.frozen(slots=True)
class AnnouncerSettings:
    """Where and how to announce: Aurora's `--announcer-*` flags, checked."""

    ensemble: str  # HOST:PORT[,HOST:PORT...][/chroot]
    serverset_path: str = DEFAULT_SERVERSET_PATH
    allow_custom_serverset_path: bool = False
    hostname: str | None = None  # the announced host; None: the agent's host name
    auth: ZkAuth | None = None


def parse_ensemble(text: str) -> str:
    """`HOST:PORT[,HOST:PORT...][/chroot]`, as ZooKeeper clients take it (port default 2181)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{text!r} is not a ZooKeeper ensemble (HOST:PORT[,HOST:PORT...])")
    hosts, slash, chroot = text.strip().partition("/")
    for item in hosts.split(","):
        match = _HOST_PORT.match(item.strip())
        if not match or (match.group(2) is not None and not 0 < int(match.group(2)) < 65536):
            raise ValueError(f"{text!r} is not a ZooKeeper ensemble: {item.strip()!r} is not "
                             "HOST or HOST:PORT with a port in 1..65535")
    if slash:
        parse_serverset_path("/" + chroot)
    return text.strip()


def parse_serverset_path(text: str) -> str:
    """An absolute ZooKeeper path, normalised: `/aurora/`, `//aurora` -> `/aurora`."""
    if not isinstance(text, str) or not text.startswith("/"):
        raise ValueError(f"{text!r} is not an absolute ZooKeeper path (it must start with /)")
    names = [p for p in text.split("/") if p]
    bad = [p for p in names if p in (".", "..") or any(ord(c) < 32 or c == "\x7f" for c in p)]
    if bad:
        raise ValueError(f"{text!r} is not a ZooKeeper path: {bad[0]!r} cannot be a node name")
    return "/" + "/".join(names)


def parse_zk_auth(text: str, source: str) -> ZkAuth:
    """The auth file (Aurora's `ZkAuth`): `{"auth": [{"scheme", "credential"}...], "acl":
    [{"scheme", "credential", "permissions": {"read": true, ...}}...]}`, both lists optional.

    Strict, as Aurora's loader is: unknown keys, missing required fields and wrong types are
    errors naming `source` and the field (`acl[1].permissions.read`).
    """
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{source}: not JSON: {exc}") from None
    _check_object(doc, source, "the file", {"auth", "acl"}, required=())
    auth = tuple(_credential(entry, source, f"auth[{i}]")
                 for i, entry in enumerate(_list(doc, "auth", source)))
    acl = tuple(_access(entry, source, f"acl[{i}]")
                for i, entry in enumerate(_list(doc, "acl", source)))
    return ZkAuth(source=source, auth=auth, acl=acl)


def _list(doc: dict[str, Any], key: str, source: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{source}: {key}: must be a list, not {type(value).__name__}")
    return value


def _check_object(value: Any, source: str, where: str, known: set[str], required: tuple[str, ...]) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"{source}: {where}: must be a JSON object, not {type(value).__name__}")
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"{source}: {where}: unknown field {unknown[0]!r} "
                         f"(known: {', '.join(sorted(known))})")
    for key in required:
        if key not in value:
            raise ValueError(f"{source}: {where}.{key}: is required")


def _text(entry: dict[str, Any], key: str, source: str, where: str) -> str:
    value = entry[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{source}: {where}.{key}: must be a non-empty string")
    return value


def _scheme_and_credential(entry: Any, source: str, where: str, known: set[str]) -> tuple[str, str]:
    _check_object(entry, source, where, known, required=tuple(sorted(known)))
    scheme = _text(entry, "scheme", source, where)
    credential = _text(entry, "credential", source, where)
    if scheme == "digest" and len(credential.split(":")) != 2:
        # The credential itself is a secret: say what is wrong, never what it is.
        raise ValueError(f"{source}: {where}.credential: a digest credential must be "
                         "USER:PASSWORD (exactly one ':')")
    return scheme, credential


def _credential(entry: Any, source: str, where: str) -> ZkCredential:
    scheme, credential = _scheme_and_credential(entry, source, where, {"scheme", "credential"})
    return ZkCredential(scheme=scheme, credential=credential)


def _access(entry: Any, source: str, where: str) -> ZkAccess:
    scheme, credential = _scheme_and_credential(entry, source, where,
                                                {"scheme", "credential", "permissions"})
    perms = entry["permissions"]
    _check_object(perms, source, f"{where}.permissions", set(PERMISSIONS), required=())
    for name, value in perms.items():
        if not isinstance(value, bool):
            raise ValueError(f"{source}: {where}.permissions.{name}: {value!r} is not true or false")
    return ZkAccess(scheme=scheme, credential=credential, permissions=ZkPermissions(**perms))
