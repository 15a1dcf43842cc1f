"""The observer's sockets and server (`executor/observe/server.py`), in this process: the
addresses it listens on (an address, one in brackets, a name of both families on one port, a
name that resolves to nothing, a port taken), which of them are loopback, a connection's own
address as waitress holds it, and a server made with its limits and settings."""
from __future__ import annotations

import errno
import inspect
import socket

import pytest

from executor.observe import server
from executor.observe.reader import Reader
from executor.observe.server import ObserverApp

pytestmark = pytest.mark.timeout(30)


def test_a_connection_s_own_address_is_read_from_waitress_channel():
    class Channel:
        def __init__(self, sock: object) -> None:
            self.socket = sock

        def check(self) -> bool:
            return False
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        assert server._served_at({"waitress.client_disconnected": Channel(sock).check}) == "127.0.0.1"
    assert server._served_at({"waitress.client_disconnected": Channel(None).check}) == ""
    assert server._served_at({}) == ""


def test_loopback_names_and_addresses():
    assert server.is_loopback([("127.0.0.1", 1), ("::1", 1), ("127.0.1.1", 2), ("fe80::1%lo", 3)]) is False
    assert server.is_loopback([("127.0.0.1", 1), ("::1", 1), ("127.0.1.1", 2)])
    assert not server.is_loopback([("10.0.0.1", 1)])
    assert server._is_name("localhost") and not server._is_name("127.0.0.1") and not server._is_name("[::1]")
    assert (server._address("::1", 80), server._address("127.0.0.1", 80)) == ("[::1]:80", "127.0.0.1:80")


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "::1"])
def test_an_address_is_listened_on_at_a_free_port(host):
    sockets = server.listen_sockets(host, 0)
    try:
        [sock] = sockets
        address = sock.getsockname()
        assert address[0] == host.strip("[]") and address[1] > 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        if sock.family == socket.AF_INET6:
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
    finally:
        for sock in sockets:
            sock.close()


def test_a_name_of_both_families_is_listened_on_once_each_on_one_port():
    found = {info[4][0] for info in socket.getaddrinfo("localhost", 0, socket.AF_UNSPEC, socket.SOCK_STREAM)}
    sockets = server.listen_sockets("localhost", 0)
    try:
        assert sorted(s.getsockname()[0] for s in sockets) == sorted(found)
        assert len({s.getsockname()[1] for s in sockets}) == 1
    finally:
        for sock in sockets:
            sock.close()


def test_a_host_that_resolves_to_nothing_is_named():
    with pytest.raises(OSError, match=r"^'\\xff' does not resolve to an address: ") as refused:
        server.listen_sockets("\udcff", 0)
    assert refused.value.__cause__ is None


def test_a_port_taken_closes_what_was_bound():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as refused:
            server.listen_sockets("127.0.0.1", port)
    assert refused.value.errno == errno.EADDRINUSE


def _served(made: object) -> ObserverApp:
    """The observer a waitress server made serves, under waitress' proxy-header middleware."""
    app = inspect.getclosurevars(made.application).nonlocals["app"]  # type: ignore[attr-defined]
    assert isinstance(app, ObserverApp)
    return app


def test_a_server_made_keeps_its_limits_and_its_settings(settings):
    limits = server.Limits(threads=3, connections=7, idle_secs=11, request_secs=5, loop_secs=2, header_bytes=999)
    made = server.make_server(Reader(settings), "127.0.0.1", 0, limits, show_to=server.SHOW_OWNER,
                              metrics_ended_secs=5.0)
    try:
        adj = made.adj
        assert (adj.threads, adj.connection_limit, adj.channel_timeout, adj.cleanup_interval,
                adj.asyncore_loop_timeout, adj.max_request_header_size, adj.max_request_body_size) == (
            3, 7, 11, 2, 2, 999, 0)
        assert (adj.ident, adj.clear_untrusted_proxy_headers, adj.expose_tracebacks) == ("stoker-observe", True, False)
        app = _served(made)
        assert (app.loopback, app.name, app.show_to, app.metrics_ended_secs) == (True, "", "owner", 5.0)
    finally:
        made.close()
    named = server.make_server(Reader(settings), "localhost", 0)
    try:
        app = _served(named)
        assert (app.name, app.show_to, app.metrics_ended_secs) == ("localhost", "all", server.metrics.DEFAULT_ENDED_SECS)
    finally:
        named.close()


def test_a_host_in_brackets_must_close_them():
    with pytest.raises(OSError, match="does not resolve to an address") as refused:
        server.listen_sockets("[::1", 0)
    assert str(refused.value).startswith("'[::1' ")


def test_a_server_made_listens_on_every_address_of_its_host_on_one_port(settings):
    made = server.make_server(Reader(settings), "localhost", 0, show_to=server.SHOW_OWNER, metrics_ended_secs=5.0)
    try:
        listening = server.listening_on(made)
        assert {host for host, _ in listening} <= {"127.0.0.1", "::1"} and len({p for _, p in listening}) == 1
    finally:
        made.close()
    numeric = server.make_server(Reader(settings), "127.0.0.1", 0)
    try:
        [(host, port)] = server.listening_on(numeric)
        assert host == "127.0.0.1" and port > 0
    finally:
        numeric.close()
