"""How `stoker executor` reaches the agent: plain HTTP, HTTPS or HTTP on a unix socket, as the
C++ executor library decides (src/executor/executor.cpp; docs/mesos.md §1).

`MESOS_DOMAIN_SOCKET` wins over everything (the agent's `--http_executor_domain_sockets`):
HTTP on that socket, never TLS, on the path `/<id of MESOS_SLAVE_PID>/api/v1/executor`, the
only one the agent serves there; a socket path of 108 bytes or more is made relative to the
working directory, and is an error if still that long. Otherwise TCP to
`MESOS_AGENT_ENDPOINT` on `/api/v1/executor`, over TLS when libprocess SSL is on (its
settings: `agenttls.py`, loaded only then). Pure: `agent_route` reads no file and no
environment but what it is given (`cwd` included).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from config.words import quoted

if TYPE_CHECKING:  # agenttls loads ssl: only when SSL is on
    from executor.mesos.agenttls import TlsSettings

API_PATH = "/api/v1/executor"
SOCKET_PATH_MAX = 108  # the C++ library's DOMAIN_SOCKET_MAX_PATH_LENGTH (sun_path's size)
SSL_PREFIXES = ("LIBPROCESS_SSL_", "SSL_")  # the first wins (openssl.cpp, reinitialize())
# libprocess' SSL flags (openssl.cpp, Flags::Flags()), no aliases among them
SSL_BOOLEANS = frozenset({
    "enabled", "support_downgrade", "verify_cert", "verify_server_cert", "require_cert",
    "require_client_cert", "verify_ipadd", "enable_ssl_v3", "enable_tls_v1_0", "enable_tls_v1_1",
    "enable_tls_v1_2", "enable_tls_v1_3"})
SSL_FLAGS = SSL_BOOLEANS | {"cert_file", "key_file", "verification_depth", "ca_dir", "ca_file", "ciphers",
                            "ecdh_curves", "hostname_validation_scheme"}


@attrs.frozen(kw_only=True)
class AgentRoute:
    """Where the calls go: `socket_path`, or `host`:`port` (over TLS with `tls`)."""

    host: str = ""
    port: int = 0
    socket_path: str | None = None
    path: str = API_PATH
    tls: TlsSettings | None = None

    @property
    def url(self) -> str:
        if self.socket_path is not None:
            return f"http+unix://{self.socket_path.replace('%', '%25').replace('/', '%2F')}{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{self.path}"

    def describe(self) -> str:
        """`http`, `https (...)`, or `unix socket PATH`: the executor's start line says it."""
        if self.socket_path is not None:
            return f"unix socket {self.socket_path}"
        return self.tls.describe() if self.tls is not None else "http"


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """`MESOS_AGENT_ENDPOINT` (`ip:port`, an IPv6 ip unbracketed or not) -> (host, port);
    ValueError when it is not that."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"agent endpoint {quoted(endpoint)} is not host:port (a port from 1 to 65535)")
    return host.strip("[]"), int(port)


def agent_route(endpoint: str, environ: Mapping[str, str], cwd: str) -> AgentRoute:
    """The route for this agent's environment; ValueError whose words start with the
    variable at fault."""
    try:
        host, port = split_endpoint(endpoint)
    except ValueError as exc:
        raise ValueError(f"MESOS_AGENT_ENDPOINT: {exc}") from None
    socket_path = environ.get("MESOS_DOMAIN_SOCKET")
    if socket_path:
        return AgentRoute(socket_path=_short_enough(socket_path, cwd),
                          path=f"/{_pid_id(environ.get('MESOS_SLAVE_PID', ''))}{API_PATH}")
    if not _ssl_enabled(environ):
        return AgentRoute(host=host, port=port)
    from executor.mesos.agenttls import tls_settings

    return AgentRoute(host=host, port=port, tls=tls_settings(environ))


def libprocess_boolean(variable: str, value: str) -> bool:
    """A libprocess boolean flag's value (stout's: true, 1, false, 0, and empty, which is
    true: a flag given no value); ValueError."""
    if value not in ("true", "1", "false", "0", ""):
        raise ValueError(f"{variable}={quoted(value)} is not true, false, 1 or 0")
    return value in ("true", "1", "")


def ssl_variables(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """libprocess' SSL flags in `environ` as stout's flags find them (FlagsBase::extract, then
    load; openssl.cpp's reinitialize()): flag name -> (VARIABLE, value); ValueError naming
    the variable for a negation libprocess refuses at its start.

    The prefix is matched as it is, the rest in any (ASCII) case: LIBPROCESS_SSL_cert_file
    is CERT_FILE, libprocess_ssl_cert_file is nothing. One name in two cases: the variable
    last in byte order wins (stout reads the environment into a sorted std::map, a later
    variable overwriting the flag: _CIPHERS < _Ciphers < _ciphers). LIBPROCESS_SSL_ in any
    case wins over SSL_ in any case. `no-NAME` (stout's `--no-NAME`) sets a boolean false."""
    new, old = (_extracted(environ, prefix) for prefix in SSL_PREFIXES)
    found = old | new  # LIBPROCESS_SSL_ over SSL_: reinitialize() inserts SSL_'s (std::map::insert
    # keeps a name already there)
    for name, (variable, value) in sorted(found.items()):
        flag = name.removeprefix("no-")
        if flag == name:
            continue
        if flag in found:
            raise ValueError(f"{found[flag][0]} and {variable} both set {flag.upper()}, which libprocess "
                             "refuses at its start")
        if flag not in SSL_BOOLEANS:
            raise ValueError(f"{variable}: {flag.upper()} is not a boolean, it cannot be negated (no-)")
        if value:
            raise ValueError(f"{variable}={quoted(value)}: a negated boolean (no-) takes no value")
        found[flag] = (variable, "false")
        del found[name]
    return found


def _extracted(environ: Mapping[str, str], prefix: str) -> dict[str, tuple[str, str]]:
    """stout's `FlagsBase::extract(prefix)`: the known flags `prefix` (as it is) starts,
    by their name lower-cased (`no-NAME` a name of its own) -> (VARIABLE, value); of one
    name in two cases the variable last in byte order (stout's sorted std::map)."""
    found: dict[str, tuple[str, str]] = {}
    for variable in sorted(environ):
        name = variable[len(prefix):].lower()
        if variable.startswith(prefix) and name.isascii() and name.removeprefix("no-") in SSL_FLAGS:
            found[name] = (variable, environ[variable])
    return found


def ssl_mismatches(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """The (SSL_ variable, LIBPROCESS_SSL_ variable) pairs that give one flag two values,
    by name: libprocess logs a WARNING of each (openssl.cpp reinitialize(), before it looks
    at ENABLED: `Mismatched values for SSL environment variables SSL_x and
    LIBPROCESS_SSL_x`, names only) and uses the LIBPROCESS_SSL_ one (`ssl_variables`)."""
    new, old = (_extracted(environ, prefix) for prefix in SSL_PREFIXES)
    return [(old[name][0], new[name][0]) for name in sorted(old) if name in new and new[name][1] != old[name][1]]


def _ssl_enabled(environ: Mapping[str, str]) -> bool:
    """libprocess SSL is on (`ssl_variables`' ENABLED is true or 1); read here so that a
    plain executor does not load `agenttls` (and `ssl`) to learn it is off."""
    found = ssl_variables(environ).get("enabled")
    return found is not None and libprocess_boolean(*found)  # set empty: true, as stout reads it


def _short_enough(path: str, cwd: str) -> str:
    """The C++ library's rule: a path of SOCKET_PATH_MAX bytes or more is used relative to
    the working directory ("./" + relative), an error if still that long."""
    if len(os.fsencode(path)) < SOCKET_PATH_MAX:
        return path
    relative = "./" + os.path.relpath(path, cwd)
    if len(os.fsencode(relative)) >= SOCKET_PATH_MAX:
        raise ValueError(f"MESOS_DOMAIN_SOCKET={quoted(path)} is {len(os.fsencode(path))} bytes long, "
                         f"and {len(os.fsencode(relative))} relative to {quoted(cwd)}: a unix socket's "
                         f"path must be shorter than {SOCKET_PATH_MAX}")
    return relative


def _pid_id(pid: str) -> str:
    """`slave(1)@10.0.0.1:5051` -> `slave(1)`: the agent's process, first in the path (up to
    the first `@`, as libprocess parses a UPID)."""
    ident, at, _address = pid.partition("@")
    if not at or not ident or "/" in ident:
        raise ValueError(f"MESOS_SLAVE_PID={quoted(pid)} is not the agent's ID@IP:PORT, which the "
                         "unix socket's path (MESOS_DOMAIN_SOCKET) starts with")
    return ident
