"""The test certificates (tests/support/tls, remade by its make_certs.sh) and a server context
like a Mesos agent's with libprocess SSL on and its defaults: TLS 1.2 only, libprocess'
default cipher list, its certificate, optionally client certificates required."""
from __future__ import annotations

import ssl
from pathlib import Path

from executor.mesos.agenttls import DEFAULT_CIPHERS

CERTS = Path(__file__).resolve().parent / "tls"


def cert(name: str) -> str:
    """The path of tests/support/tls/NAME.pem (ca, other-ca, agent, client, wrong)."""
    return str(CERTS / f"{name}.pem")


def key(name: str) -> str:
    return str(CERTS / f"{name}.key")


def agent_context(name: str = "agent", require_client_cert: bool = False, tls13: bool = False) -> ssl.SSLContext:
    """The agent's server context: `name`'s certificate; with `require_client_cert`, a
    client certificate signed by the test CA is required (libprocess' REQUIRE_CLIENT_CERT);
    TLS 1.2 only, as libprocess' defaults, or with `tls13` TLS 1.3 only (its
    ENABLE_TLS_V1_3), whose server sends its session tickets after the handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_3 if tls13 else ssl.TLSVersion.TLSv1_2
    context.set_ciphers(DEFAULT_CIPHERS)
    context.load_cert_chain(cert(name), key(name))
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cert("ca"))
    return context


def client_env(name: str | None = "client", **switches: str) -> dict[str, str | None]:
    """The executor's LIBPROCESS_SSL_* (the agent's own, inherited): `name`'s certificate
    and key (None: none, and no SSL_CERT_FILE either: OpenSSL's CA bundle variable is
    libprocess' deprecated name of CERT_FILE), and `switches` as LIBPROCESS_SSL_<KEY>=value."""
    env: dict[str, str | None] = {"LIBPROCESS_SSL_ENABLED": "true", "SSL_CERT_FILE": None}
    if name is not None:
        env |= {"LIBPROCESS_SSL_CERT_FILE": cert(name), "LIBPROCESS_SSL_KEY_FILE": key(name)}
    return env | {f"LIBPROCESS_SSL_{k.upper()}": v for k, v in switches.items()}



def agent_environ(endpoint: str, env: dict[str, str | None]) -> dict[str, str]:
    """The environment an in-process `agent_route` reads for an agent at `endpoint`: its
    MESOS_SLAVE_PID and `env` (`client_env`'s), the variables it unsets (None) left out."""
    return {"MESOS_SLAVE_PID": f"slave(1)@{endpoint}", **{k: v for k, v in env.items() if v is not None}}
