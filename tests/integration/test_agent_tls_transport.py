"""The transport over TLS and over the agent's unix socket, against the agent simulator in
those modes: SUBSCRIBE, calls, abort() waking a blocked read, a refused handshake's words,
the unix socket's only path."""
from __future__ import annotations

import logging
import os
import select
import socket
import threading

import pytest

from executor.mesos import agenttls
from executor.mesos.agentroute import AgentRoute, agent_route
from executor.mesos.transport import AgentTransport, Outcome, StreamBroken
from executor.mesos.wire import Calls
from tests.support.agent_sim import AgentSimulator
from tests.support.agent_tls import agent_context, agent_environ, cert, client_env
from tests.support.waiting import wait_for

TOKEN = "tls-t0ken"


@pytest.fixture
def tls_agent(tmp_path):
    with AgentSimulator(sandbox=tmp_path, tls=agent_context(), auth_token=TOKEN) as sim:
        yield sim


def _transport(sim: AgentSimulator, env: dict[str, str | None]) -> AgentTransport:
    return AgentTransport(agent_route(sim.endpoint, agent_environ(sim.endpoint, env), str(sim.sandbox)), TOKEN)


def _subscribe(sim: AgentSimulator, transport: AgentTransport):
    return transport.subscribe(Calls(sim.framework_id, sim.executor_id).subscribe([], []), 2.0, 2.0)


def _read_until_aborted(sim: AgentSimulator, transport: AgentTransport) -> str:
    """SUBSCRIBE, read the stream in a thread, abort it once blocked: what the reader saw."""
    result, stream = _subscribe(sim, transport)
    assert result.outcome is Outcome.ACCEPTED and stream is not None, result
    seen: list[str] = []

    def read() -> None:
        try:
            for _chunk in stream.chunks():
                seen.append("chunk")
        except StreamBroken as e:
            seen.append(f"broken: {e}")

    reader = threading.Thread(target=read)
    reader.start()
    wait_for(lambda: seen, 2.0, message="SUBSCRIBED read")
    stream.settle()  # blocked in recv with no timeout from now on
    stream.abort()
    reader.join(2.0)
    stream.close()
    assert not reader.is_alive()
    return seen[-1]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("tls13", [False, True], ids=["TLS 1.2", "TLS 1.3"])
def test_a_call_connection_made_ahead_over_tls_carries_the_calls_until_the_agent_closes_it(tmp_path, tls13):
    """Over TLS 1.3 the agent sends its session tickets after the handshake: a connection made
    ahead of its first call has them unread, a readable socket that is still the agent's (read
    as closed, it was made again: a second handshake)."""
    with AgentSimulator(sandbox=tmp_path, tls=agent_context(tls13=tls13), auth_token=TOKEN) as sim:
        transport = _transport(sim, client_env(None, **({"enable_tls_v1_3": "true"} if tls13 else {})))
        result, stream = _subscribe(sim, transport)
        assert result.outcome is Outcome.ACCEPTED and stream is not None, result
        try:
            transport.ready_calls()
            sock = transport._call_conn.sock  # type: ignore[union-attr]
            assert sock.version() == ("TLSv1.3" if tls13 else "TLSv1.2")
            assert bool(select.select([sock], [], [], 0.5 if tls13 else 0)[0]) is tls13  # the tickets came
            message = Calls(sim.framework_id, sim.executor_id).message(b"hi")
            assert transport.post(message).outcome is Outcome.ACCEPTED
            assert sim.connections_made == 2  # the stream's and the calls'
            sim._server.drop_connections()  # type: ignore[union-attr]  # the agent closes both
            wait_for(lambda: select.select([sock], [], [], 0)[0], 5.0, message="the agent's close")
            assert transport.post(message).outcome is Outcome.ACCEPTED
            assert sim.connections_made == 3 and sim.messages == [b"hi", b"hi"]
        finally:
            stream.close()
            transport.close()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("then, open_", [("tickets", True), ("bytes", False), ("close", False), ("garbage", False)])
def test_an_idle_tls_connection_is_still_open_only_when_what_came_carried_no_data(then, open_):
    """What a TLS 1.3 agent's side did after the handshake (its session tickets only, bytes no
    call asked for, a close, a record that does not decrypt) against `TlsConnection.still_open`."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with agent_context(tls13=True).wrap_socket(conn, server_side=True) as tls:
            if then == "bytes":
                tls.sendall(b"HTTP/1.1 200 OK\r\n")
            elif then == "garbage":  # an application data record's header, 5 bytes not sealed by the key
                os.write(tls.fileno(), b"\x17\x03\x03\x00\x05hello")
            elif then == "tickets":
                done.wait(10)  # open until the client has judged it
            # (a close: the socket's, with no close_notify, as a process that ends)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    settings = agenttls.tls_settings(client_env(None, enable_tls_v1_3="true", verify_server_cert="false"))
    conn = agenttls.TlsConnection("127.0.0.1", listener.getsockname()[1], 5.0, agenttls.AgentTls.load(settings))
    try:
        conn.connect()
        assert conn.sock is not None
        assert select.select([conn.sock], [], [], 5.0)[0]  # the tickets, or what followed them
        if then != "tickets":
            server.join(5.0)
        assert conn.still_open() is open_
        assert conn.sock.gettimeout() == 5.0  # as it was
    finally:
        done.set()
        conn.close()
        listener.close()
        server.join(5.0)


def test_over_tls_with_libprocess_defaults_subscribe_calls_and_abort_work(tls_agent):
    transport = _transport(tls_agent, client_env(None))
    assert transport.url.startswith("https://127.0.0.1:")
    assert _read_until_aborted(tls_agent, transport) == "broken: aborted"
    update = Calls(tls_agent.framework_id, tls_agent.executor_id).message(b"hi")
    assert transport.post(update).outcome is Outcome.ACCEPTED  # 202 on the kept-alive TLS connection
    assert transport.post(update).outcome is Outcome.ACCEPTED
    transport.close()
    assert tls_agent.messages == [b"hi", b"hi"]
    assert {r.header("Authorization") for r in tls_agent.requests} == {f"Bearer {TOKEN}"}


def test_verified_against_the_ca_with_the_openssl_scheme_and_the_ip_address(tls_agent):
    transport = _transport(tls_agent, client_env(None, verify_server_cert="true", ca_file=cert("ca"),
                                                 hostname_validation_scheme="openssl", verify_ipadd="1"))
    result, stream = _subscribe(tls_agent, transport)
    assert result.outcome is Outcome.ACCEPTED and stream is not None
    stream.abort()
    stream.close()


@pytest.mark.parametrize("switches, words", [
    ({"verify_server_cert": "true", "ca_file": cert("other-ca")},
     "certificate verify failed: unable to get local issuer certificate"),
    ({"ciphers": "ECDHE-RSA-AES256-GCM-SHA384"}, "sslv3 alert handshake failure (the agent shares no "
     "cipher with LIBPROCESS_SSL_CIPHERS, or requires a client certificate and LIBPROCESS_SSL_CERT_FILE is not set)"),
])
def test_a_refused_handshake_is_transient_and_says_what_failed(tls_agent, switches, words):
    transport = _transport(tls_agent, client_env(None, **switches))
    result, stream = _subscribe(tls_agent, transport)
    assert stream is None and result.outcome is Outcome.TRANSIENT and result.status is None
    assert result.detail == f"TlsFailed: TLS handshake with {tls_agent.endpoint} failed: {words}"


def test_python_s_own_defaults_share_no_cipher_with_libprocess_defaults(tls_agent):
    """Why the client applies libprocess' cipher list: OpenSSL 3's default one has no SHA-1
    cipher, libprocess' has nothing else (for TLS 1.2, its only version by default)."""
    import socket
    import ssl

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", tls_agent.port), 2.0) as sock, pytest.raises(ssl.SSLError):
        context.wrap_socket(sock).close()


def test_the_unix_socket_serves_the_agent_s_path_and_refuses_any_other(tmp_path):
    with AgentSimulator(sandbox=tmp_path, unix_socket=True) as sim:
        environ = {"MESOS_DOMAIN_SOCKET": str(sim.socket_path), "LIBPROCESS_SSL_ENABLED": "true"}
        transport = _transport(sim, environ)  # never TLS on the socket, SSL on or not
        assert transport.url.startswith("http+unix://")
        assert _read_until_aborted(sim, transport) == "broken: aborted"
        assert [r.path for r in sim.requests] == ["/slave(1)/api/v1/executor"]
        wrong = AgentTransport(AgentRoute(socket_path=str(sim.socket_path)))  # /api/v1/executor
        result, stream = _subscribe(sim, wrong)
        assert stream is None and result.status == 403 and result.outcome is Outcome.REJECTED


@pytest.mark.parametrize("tls13", [False, True], ids=["tls1.2", "tls1.3"])
def test_the_idle_tls_call_connection_is_kept_and_reused(tmp_path, tls13):
    """`_dropped` must not take TLS' own bytes (TLS 1.3's session tickets, read with the
    first answer) for a closed connection: a new handshake for every call."""
    import ssl

    context = agent_context()
    if tls13:
        context.maximum_version = ssl.TLSVersion.TLSv1_3
    with AgentSimulator(sandbox=tmp_path, tls=context, auth_token=TOKEN) as sim:
        transport = _transport(sim, client_env(None, **({"enable_tls_v1_3": "1"} if tls13 else {})))
        result, stream = _subscribe(sim, transport)
        assert stream is not None, result
        message = Calls(sim.framework_id, sim.executor_id).message(b"hi")
        connections = []
        for _ in range(3):
            assert transport.post(message).outcome is Outcome.ACCEPTED
            connections.append(transport._call_conn)
        assert connections[0].sock.version() == ("TLSv1.3" if tls13 else "TLSv1.2")
        assert connections[0] is connections[1] is connections[2]
        stream.abort()
        stream.close()
        transport.close()


@pytest.mark.parametrize("scheme, words", [
    ("openssl", "certificate verify failed: IP address mismatch, certificate is not valid for '127.0.0.1'."),
    # legacy: no SAN, so the common name (stoker-executor) against 127.0.0.1's reverse name
    ("legacy", "Presented Certificate Name: stoker-executor does not match peer hostname name: "),
], ids=["openssl", "legacy"])
def test_an_agent_certificate_of_the_ca_for_another_name_fails_the_hostname_check(tmp_path, scheme, words):
    with AgentSimulator(sandbox=tmp_path, tls=agent_context("client")) as sim:  # a CA-signed cert, not the agent's
        transport = _transport(sim, client_env(None, verify_server_cert="1", ca_file=cert("ca"),
                                               hostname_validation_scheme=scheme, verify_ipadd="1"))
        result, stream = _subscribe(sim, transport)
    assert stream is None and result.outcome is Outcome.TRANSIENT
    reverse = agenttls.reverse_name("127.0.0.1")
    if scheme == "legacy" and reverse is None:
        words = "Could not verify presented certificate with IP 127.0.0.1"
    assert result.detail.startswith(f"TlsFailed: TLS handshake with {sim.endpoint} failed: {words}"), result.detail


class _StuckResolver:
    """socket.getnameinfo as a resolver that never answers until released (a DNS server
    gone: the lookup waits out resolv.conf's timeouts); counts the lookups."""

    def __init__(self) -> None:
        self.calls = 0
        self.released = threading.Event()

    def __call__(self, address, flags):
        self.calls += 1
        self.released.wait(10.0)
        return "localhost", "0"


def test_a_stuck_reverse_dns_lookup_does_not_hold_the_subscribe_past_its_timeout(tls_agent, monkeypatch):
    """The legacy check's reverse lookup is bounded by the connection's timeout (a SUBSCRIBE's
    is what MESOS_RECOVERY_TIMEOUT leaves), fails TRANSIENT saying so, and is made once per
    agent address: the next connection waits for the same lookup and then uses its name."""
    import time

    resolver = _StuckResolver()
    monkeypatch.setattr(agenttls.socket, "getnameinfo", resolver)
    transport = _transport(tls_agent, client_env(None, verify_server_cert="1", ca_file=cert("ca")))
    body = Calls(tls_agent.framework_id, tls_agent.executor_id).subscribe([], [])
    started = time.monotonic()
    result, stream = transport.subscribe(body, 1.0, 1.0)
    assert time.monotonic() - started < 2.0
    assert stream is None and result.outcome is Outcome.TRANSIENT
    assert "reverse DNS lookup of 127.0.0.1 took more than" in result.detail, result.detail
    resolver.released.set()
    result, stream = transport.subscribe(body, 1.0, 1.0)
    assert result.outcome is Outcome.ACCEPTED and stream is not None, result
    stream.abort()
    stream.close()
    transport.post(Calls(tls_agent.framework_id, tls_agent.executor_id).message(b"hi"))
    assert resolver.calls == 1
    transport.close()


class _SlowResolver:
    """socket.getnameinfo as a resolver that answers after `secs`: the name, or no name."""

    def __init__(self, secs: float, name: str | None) -> None:
        self.secs, self.name, self.calls = secs, name, 0

    def __call__(self, address, flags):
        self.calls += 1
        threading.Event().wait(self.secs)
        if self.name is None:
            raise OSError("Name or service not known")
        return self.name, "0"


def _slow_lookups(caplog) -> list[dict]:
    return [r.stoker_fields for r in caplog.records
            if r.levelno == logging.WARNING and getattr(r, "stoker_event", "") == "agent_reverse_dns_slow"]


def test_a_slow_reverse_dns_lookup_is_one_warning_naming_the_address_and_its_time(tls_agent, monkeypatch, caplog):
    """libprocess warns when the legacy check's lookup takes more than 100 ms (openssl.cpp,
    SLOW_DNS_WARN_THRESHOLD): so does the executor, once for the address, however many
    connections wait for it."""
    monkeypatch.setattr(agenttls.socket, "getnameinfo", _SlowResolver(0.3, "localhost"))
    transport = _transport(tls_agent, client_env(None, verify_server_cert="1", ca_file=cert("ca")))
    with caplog.at_level(logging.INFO):
        result, stream = _subscribe(tls_agent, transport)
        assert result.outcome is Outcome.ACCEPTED and stream is not None, result
        transport.post(Calls(tls_agent.framework_id, tls_agent.executor_id).message(b"hi"))
        stream.abort()
        stream.close()
        transport.close()
    [warned] = _slow_lookups(caplog)
    assert warned["address"] == "127.0.0.1" and 250 < warned["took_ms"] < 2000, warned


def test_a_slow_lookup_that_finds_no_name_is_made_again_but_warned_of_once(caplog):
    resolver, fast = _SlowResolver(0.15, None), _SlowResolver(0.0, None)
    names = agenttls.ReverseNames()
    with caplog.at_level(logging.INFO):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(agenttls.socket, "getnameinfo", resolver)
            assert names.name("192.0.2.7", 2.0) is None and names.name("192.0.2.7", 2.0) is None
            patch.setattr(agenttls.socket, "getnameinfo", fast)
            assert names.name("192.0.2.8", 2.0) is None
    assert resolver.calls == 2 and fast.calls == 1
    assert [w["address"] for w in _slow_lookups(caplog)] == ["192.0.2.7"]


@pytest.mark.parametrize("handshakes", [False, True], ids=["never-handshakes", "handshakes-then-silent"])
def test_a_frozen_tls_agent_does_not_hold_the_subscribe_past_its_timeouts(handshakes):
    """A listener the kernel accepts for (an agent stopped or deadlocked) that never answers
    the ClientHello, or completes the handshake and then never answers the request."""
    import socket
    import time

    with socket.create_server(("127.0.0.1", 0)) as server:
        accepted: list[socket.socket] = []

        def accept() -> None:
            conn, _ = server.accept()
            accepted.append(agent_context().wrap_socket(conn, server_side=True) if handshakes else conn)

        acceptor = threading.Thread(target=accept)
        acceptor.start()
        endpoint = f"127.0.0.1:{server.getsockname()[1]}"
        transport = AgentTransport(agent_route(endpoint, agent_environ(endpoint, client_env(None)), "/"), TOKEN)
        started = time.monotonic()
        result, stream = transport.subscribe(b"{}", 0.5, 0.5)
        took = time.monotonic() - started
        acceptor.join(2.0)
        for conn in accepted:
            conn.close()
    assert stream is None and result.outcome is Outcome.TRANSIENT and result.status is None
    assert took < 1.5, took
    assert "timed out" in result.detail, result.detail
