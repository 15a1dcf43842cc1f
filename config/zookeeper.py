"""Where and how a task announces in ZooKeeper, as plain checked values.

Owns `AnnouncerSettings` (Aurora's `--announcer-*` flags, or `stoker run --announce`, once
given), `ZkAuth` (the `--announcer-zookeeper-auth-config` file in Aurora's format) and its
parser. Every parser raises ValueError with a message naming the file and the field; a
credential is never part of a message or a repr. Split from `config.announcer` (the job's
side) so that a command that announces nothing never creates these classes.

Pure: no I/O (the settings read the auth file and hand its text to `parse_zk_auth`), and
nothing here knows ZooKeeper's client library.
"""
from __future__ import annotations

import json
from typing import Any

import attrs

from config.announcer import DEFAULT_SERVERSET_PATH
from config.words import quoted

PERMISSIONS = ("read", "write", "create", "delete", "admin")


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


def parse_zk_auth(text: str, source: str) -> ZkAuth:
    """The auth file (Aurora's `ZkAuth`): `{"auth": [{"scheme", "credential"}...], "acl":
    [{"scheme", "credential", "permissions": {"read": true, ...}}...]}`, both lists optional.
    A `digest` or `sasl` credential to log in with is USER:PASSWORD, and there is one `sasl`
    login at most (ZooKeeper's client refuses either when the session starts).

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
    sasl = [i for i, c in enumerate(auth) if c.scheme == "sasl"]
    if len(sasl) > 1:  # kazoo's rule: one SASL login per session
        raise ValueError(f"{source}: auth[{sasl[1]}].scheme: a second sasl entry (one SASL login per session)")
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
        raise ValueError(f"{source}: {where}: unknown field {quoted(unknown[0])} "
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
    if scheme == "sasl" and len(credential.split(":")) != 2:  # kazoo logs in as USER with PASSWORD
        raise ValueError(f"{source}: {where}.credential: a sasl credential must be "
                         "USER:PASSWORD (exactly one ':')")
    return ZkCredential(scheme=scheme, credential=credential)


def _access(entry: Any, source: str, where: str) -> ZkAccess:
    scheme, credential = _scheme_and_credential(entry, source, where,
                                                {"scheme", "credential", "permissions"})
    perms = entry["permissions"]
    _check_object(perms, source, f"{where}.permissions", set(PERMISSIONS), required=())
    for name, value in perms.items():
        if not isinstance(value, bool):
            raise ValueError(f"{source}: {where}.permissions.{name}: {quoted(value)} is not true or false")
    return ZkAccess(scheme=scheme, credential=credential, permissions=ZkPermissions(**perms))
