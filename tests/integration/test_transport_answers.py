"""The transport against a listener whose every answer the test writes (tests/support/
agent_answers.py): the call connection kept alive, replaced when the agent closed it or an
answer left it unusable, each call bounded by its timeout, an answer's body read for the
log line even when the agent closes after it; the event stream read piece by piece, its
end, its break and its abort told apart; the agent's unix socket."""
from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from executor.mesos.agentroute import AgentRoute
from executor.mesos.transport import (
    AgentStream,
    AgentTransport,
    CallResult,
    Outcome,
    StreamBroken,
    _answer_body,
    _by_address,
)
from tests.support.agent_answers import ANSWER_202, CLOSE, HOLD, AgentAnswers, Say, answer
from tests.support.http_server import shut_down
from tests.support.waiting import wait_for

CALL_SECS = 0.4  # each call's timeout here
BOUND_SECS = 3.0  # what "ended within its timeout" allows, on a loaded machine


def transport(agent: AgentAnswers, token: str | None = None, call_secs: float = CALL_SECS) -> AgentTransport:
    return AgentTransport(f"127.0.0.1:{agent.port}", token, call_timeout_secs=call_secs)


@contextlib.contextmanager
def transport_to(agent: AgentAnswers, token: str | None = None, call_secs: float = CALL_SECS) -> Iterator[AgentTransport]:
    """A transport to `agent`; at the end the agent's side of each connection is shut down
    first, which wakes a read a failing test left blocked (the close would wait for it)."""
    t = transport(agent, token, call_secs)
    try:
        yield t
    finally:
        agent.drop_connections()
        t.close()


def within(secs: float, call):
    """`call()`'s result or exception, which must come within `secs` (run on a thread, so
    that a call that never ends fails the test instead of holding it)."""
    got: list = []

    def calling() -> None:
        try:
            got.append((True, call()))
        except BaseException as e:  # (raised again below, in the test's thread)
            got.append((False, e))

    thread = threading.Thread(target=calling, daemon=True)
    thread.start()
    thread.join(secs)
    assert got, f"still waiting after {secs} s"
    returned, value = got.pop()  # (not got[0]: an exception in `got` holds its frame, which holds `got`)
    if not returned:
        raise value
    return value


def test_calls_go_on_one_kept_connection_as_the_agent_s_path_with_the_bearer_token():
    with AgentAnswers() as agent:
        with transport_to(agent, "tok3n") as t:
            assert t.post(b'{"type":"UPDATE"}') == CallResult(Outcome.ACCEPTED, 202)
            assert t.post(b'{"type":"MESSAGE"}') == CallResult(Outcome.ACCEPTED, 202)
    assert agent.connections == 1
    assert [h.line for h in agent.heard] == [b"POST /api/v1/executor HTTP/1.1"] * 2
    assert [h.body for h in agent.heard] == [b'{"type":"UPDATE"}', b'{"type":"MESSAGE"}']
    head = agent.heard[0].head.decode()
    assert "Authorization: Bearer tok3n" in head and "Content-Type: application/json" in head
    assert "Accept: application/json" in head


@pytest.mark.timeout(10)
def test_an_agent_named_by_a_host_name_is_reached_its_name_looked_up_as_bytes(monkeypatch):
    """The name goes to getaddrinfo as ASCII bytes (`transport._by_address`): a str host went
    through the idna codec, three modules the executor loaded for that alone."""
    looked_up: list[object] = []
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *rest: looked_up.append(host) or real(host, *rest))
    with AgentAnswers() as agent:
        with contextlib.closing(AgentTransport(f"localhost:{agent.port}", None, call_timeout_secs=CALL_SECS)) as t:
            assert t.post(b'{"type":"UPDATE"}') == CallResult(Outcome.ACCEPTED, 202)
    assert looked_up == [b"localhost"]


@pytest.mark.parametrize("host, given", [("127.0.0.1", b"127.0.0.1"), ("agent.example", b"agent.example"),
                                         ("bücher.example", "bücher.example")])  # beyond ASCII: as text, for idna
def test_an_address_goes_to_the_connect_with_its_timeout_and_source(monkeypatch, host, given):
    asked: list[tuple[object, ...]] = []
    monkeypatch.setattr(socket, "create_connection", lambda *args: asked.append(args))
    _by_address((host, 5051), 0.25, ("127.0.0.2", 0))
    assert asked == [((given, 5051), 0.25, ("127.0.0.2", 0))]


@pytest.mark.timeout(20)
def test_a_call_connection_readied_ahead_carries_the_calls_and_is_readied_once():
    with AgentAnswers() as agent:
        with transport_to(agent) as t:
            t.ready_calls()
            wait_for(lambda: agent.connections == 1, BOUND_SECS)
            t.ready_calls()  # the one open is kept
            assert t.post(b'{"type":"UPDATE"}') == CallResult(Outcome.ACCEPTED, 202)
    assert agent.connections == 1 and [h.connection for h in agent.heard] == [1]


@pytest.mark.timeout(20)
def test_a_call_connection_that_cannot_be_readied_is_left_to_the_call_which_says_why():
    agent = AgentAnswers()
    agent.close()  # nothing listens
    t = transport(agent)
    try:
        t.ready_calls()  # nothing raised, nothing kept
        result = t.post(b"{}")
        assert result.outcome is Outcome.TRANSIENT and result.detail.startswith("ConnectionRefusedError: ")
    finally:
        t.close()


def test_an_accepted_call_s_body_is_not_its_detail_and_a_refused_one_s_is():
    with AgentAnswers([Say(answer("202 Accepted", b"fine")), Say(answer("400 Bad Request", b"no such task"))]) as agent:
        with transport_to(agent) as t:
            assert t.post(b"{}") == CallResult(Outcome.ACCEPTED, 202, "")
            assert t.post(b"{}") == CallResult(Outcome.REJECTED, 400, "no such task")


def test_a_refusal_the_agent_closes_after_still_says_why_and_the_next_call_connects_anew():
    """`Connection: close` hands the socket from the connection to the answer: its body was
    left unread, and the log line said only `HTTP 400`."""
    refused = answer("400 Bad Request", b"Framework 'f' is unknown", "Connection: close")
    with AgentAnswers([Say(refused, then=CLOSE)]) as agent:
        with transport_to(agent) as t:
            assert t.post(b"{}") == CallResult(Outcome.REJECTED, 400, "Framework 'f' is unknown")
            assert t.post(b"{}").outcome is Outcome.ACCEPTED
    assert agent.connections == 2


def test_a_subscribe_refused_with_connection_close_says_why():
    refused = answer("403 Forbidden", b"claims are not this executor's", "Connection: close")
    with AgentAnswers([Say(refused, then=CLOSE)]) as agent:
        result, stream = transport(agent).subscribe(b"{}", 1.0, 1.0)
    assert stream is None
    assert result == CallResult(Outcome.REJECTED, 403, "claims are not this executor's")


def test_a_subscribe_refused_with_the_token_quoted_says_token_instead():
    refused = answer("401 Unauthorized", b"Authorization: Bearer tok3n-value is not valid")
    with AgentAnswers([Say(refused, then=CLOSE)]) as agent:
        result, _ = transport(agent, "tok3n-value").subscribe(b"{}", 1.0, 1.0)
    assert result == CallResult(Outcome.REJECTED, 401, "Authorization: Bearer [token] is not valid")


def test_a_call_refused_with_the_token_quoted_says_token_instead():
    refused = answer("400 Bad Request", b"bad call from Bearer tok3n-value")
    with AgentAnswers([Say(refused)]) as agent, transport_to(agent, "tok3n-value") as t:
        assert t.post(b"{}") == CallResult(Outcome.REJECTED, 400, "bad call from Bearer [token]")


def test_a_connection_the_agent_closed_while_idle_is_replaced_before_the_next_call():
    with AgentAnswers() as agent:
        with transport_to(agent) as t:
            assert t.post(b"{}").outcome is Outcome.ACCEPTED
            agent.drop_connections()
            time.sleep(0.05)  # the FIN reaches this side
            assert t.post(b"{}") == CallResult(Outcome.ACCEPTED, 202)
    assert agent.connections == 2


def test_an_agent_gone_after_its_idle_close_makes_each_call_transient_not_an_error():
    agent = AgentAnswers()
    t = transport(agent)
    try:
        assert t.post(b"{}").outcome is Outcome.ACCEPTED
        agent.close()  # the connection and the listener both gone
        time.sleep(0.05)
        for _ in range(2):
            result = t.post(b"{}")
            assert result.outcome is Outcome.TRANSIENT and result.status is None
            assert result.detail.startswith("ConnectionRefusedError: "), result
    finally:
        t.close()


def test_a_kept_connection_is_judged_at_once_not_after_a_wait():
    with AgentAnswers() as agent:
        with transport_to(agent) as t:
            t.post(b"{}")
            started = time.monotonic()
            for _ in range(5):
                t.post(b"{}")
            assert time.monotonic() - started < 2.5  # (a look that waited a second each time: 5 s)
    assert agent.connections == 1


def test_a_call_never_answered_is_transient_within_its_timeout():
    with AgentAnswers([Say(b"", then=HOLD)]) as agent:
        with transport_to(agent) as t:
            result = within(BOUND_SECS, lambda: t.post(b"{}"))
    assert result == CallResult(Outcome.TRANSIENT, None, "TimeoutError: timed out")


def test_on_a_kept_connection_the_next_call_has_its_whole_timeout_again():
    """The last answer's body was read with what was left of its call's time (0.2 s of 1);
    the next call, answered 0.5 s after it was sent, must have its whole second again."""
    slow_body = Say(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\no", pause_secs=0.8, rest=b"k")
    late_answer = Say(b"", pause_secs=0.5, rest=ANSWER_202)
    with AgentAnswers([slow_body, late_answer]) as agent:
        with transport_to(agent, call_secs=1.0) as t:
            assert within(BOUND_SECS, lambda: t.post(b"{}")).outcome is Outcome.ACCEPTED
            assert within(BOUND_SECS, lambda: t.post(b"{}")) == CallResult(Outcome.ACCEPTED, 202)
    assert agent.connections == 1


def test_an_answer_whose_body_stops_short_ends_the_call_in_time_and_its_connection():
    stalled = Say(b"HTTP/1.1 202 Accepted\r\nContent-Length: 100\r\n\r\nonly ten b", then=HOLD)
    with AgentAnswers([stalled]) as agent:
        with transport_to(agent) as t:
            assert within(BOUND_SECS, lambda: t.post(b"{}")) == \
                CallResult(Outcome.TRANSIENT, None, "TimeoutError: timed out")
            assert within(BOUND_SECS, lambda: t.post(b"{}")) == CallResult(Outcome.ACCEPTED, 202)
    assert agent.connections == 2  # the stalled one is not asked again


def test_an_answer_longer_than_what_is_quoted_leaves_its_connection():
    long_body = answer("500 Internal Server Error", b"e" * 5000)
    with AgentAnswers([Say(long_body)]) as agent:
        with transport_to(agent) as t:
            refused = t.post(b"{}")
            assert refused.status == 500 and refused.detail == "e" * 1024 + " ..."
            assert t.post(b"{}").outcome is Outcome.ACCEPTED
    assert agent.connections == 2


@contextlib.contextmanager
def answered(agent: AgentAnswers) -> Iterator[tuple[http.client.HTTPResponse, socket.socket]]:
    """A POST's answer and its connection's socket; at the end the socket is shut down
    first, which wakes a read a failing test left blocked (its close would wait for it)."""
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=5)
    conn.request("POST", "/api/v1/executor", body=b"{}")
    sock = conn.sock
    assert sock is not None
    try:
        yield conn.getresponse(), sock
    finally:
        shut_down([sock])
        conn.close()


def test_a_body_is_read_up_to_its_limit_and_said_whole_only_when_it_ended():
    with AgentAnswers([Say(answer("500 Oops", b"0123456789")), Say(answer("500 Oops", b"abc"))]) as agent:
        with answered(agent) as (response, sock):
            assert _answer_body(response, sock, 4, time.monotonic() + 2) == (b"0123", False)
        with answered(agent) as (response, sock):
            assert _answer_body(response, sock, 4, time.monotonic() + 2) == (b"abc", True)


def test_a_body_that_comes_in_pieces_is_read_whole_and_no_further_than_its_limit():
    in_two = Say(b"HTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\n01", pause_secs=0.1, rest=b"23")
    past_limit = Say(b"HTTP/1.1 500 Oops\r\nContent-Length: 6\r\n\r\n01", pause_secs=0.1, rest=b"2345")
    with AgentAnswers([in_two, past_limit]) as agent:
        with answered(agent) as (response, sock):
            assert _answer_body(response, sock, 100, time.monotonic() + 2) == (b"0123", True)
        with answered(agent) as (response, sock):
            assert _answer_body(response, sock, 4, time.monotonic() + 2) == (b"0123", False)


def test_a_body_that_stalls_is_given_up_at_its_deadline():
    stalled = Say(b"HTTP/1.1 500 Oops\r\nContent-Length: 50\r\n\r\npart", then=HOLD)
    with AgentAnswers([stalled]) as agent, answered(agent) as (response, sock):
        with pytest.raises(TimeoutError):  # "part" read, then the wait for the rest
            within(BOUND_SECS, lambda: _answer_body(response, sock, 1000, time.monotonic() + 0.3))


def test_a_body_with_its_deadline_passed_is_not_read():
    with AgentAnswers([Say(answer("500 Oops", b"late"))]) as agent, answered(agent) as (response, sock):
        assert _answer_body(response, sock, 1000, time.monotonic() - 0.01) == (b"", False)


# ---- the event stream ----

STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def subscribed(agent: AgentAnswers, answer_secs: float | None = None) -> AgentStream:
    result, stream = transport(agent).subscribe(b"{}", 1.0, answer_secs)
    assert result == CallResult(Outcome.ACCEPTED, 200) and stream is not None
    return stream


def test_a_stream_s_pieces_come_as_sent_and_its_last_chunk_ends_it_cleanly():
    with AgentAnswers([Say(STREAM_HEAD + chunk(b"12\n") + chunk(b'{"a":1}'), then=HOLD)]) as agent:
        stream = subscribed(agent)
        try:
            pieces = stream.chunks()
            assert within(BOUND_SECS, lambda: next(pieces)) == b"12\n"
            assert within(BOUND_SECS, lambda: next(pieces)) == b'{"a":1}'
        finally:
            stream.abort()
            stream.close()
    with AgentAnswers([Say(STREAM_HEAD + chunk(b"x") + b"0\r\n\r\n", then=HOLD)]) as agent:
        stream = subscribed(agent)
        try:
            assert within(BOUND_SECS, lambda: list(stream.chunks())) == [b"x"]
        finally:
            stream.close()
    assert stream.odd_type == ""


def test_a_stream_cut_inside_a_chunk_is_broken_with_its_error_not_aborted():
    with AgentAnswers([Say(STREAM_HEAD + b"10\r\nonly a part", then=CLOSE)]) as agent:
        stream = subscribed(agent)
        try:
            with pytest.raises(StreamBroken) as broken:
                within(BOUND_SECS, lambda: list(stream.chunks()))
        finally:
            stream.close()
    assert str(broken.value).startswith("IncompleteRead: "), broken.value


def test_an_abort_ends_a_stream_that_ends_with_its_connection_as_aborted():
    """An answer without chunks or a length ends with its connection: the abort's shutdown
    reads as that end, and must still be told as the abort it is."""
    with AgentAnswers([Say(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n7\n", then=HOLD)]) as agent:
        stream = subscribed(agent, answer_secs=5.0)
        try:
            pieces = stream.chunks()
            assert within(BOUND_SECS, lambda: next(pieces)) == b"7\n"
            stream.settle()  # (its connection's socket, not the connection's None)
            assert stream._sock.gettimeout() is None
            stream.abort()
            with pytest.raises(StreamBroken, match="^aborted$"):
                within(BOUND_SECS, lambda: next(pieces))
        finally:
            stream.close()


def test_bytes_that_never_make_an_event_do_not_hold_the_stream_past_its_answer_time():
    with AgentAnswers([Say(STREAM_HEAD + chunk(b"\n"), then=HOLD)]) as agent:
        stream = subscribed(agent, answer_secs=0.3)
        try:
            pieces = stream.chunks()
            assert within(BOUND_SECS, lambda: next(pieces)) == b"\n"
            time.sleep(0.35)
            with pytest.raises(StreamBroken, match="^no event came within the outage's time left$"):
                within(BOUND_SECS, lambda: next(pieces))
        finally:
            stream.abort()
            stream.close()


def test_a_stream_settled_after_its_close_does_not_raise():
    with AgentAnswers([Say(STREAM_HEAD, then=HOLD)]) as agent:
        stream = subscribed(agent, answer_secs=0.3)
        stream.close()
        stream.settle()
        stream.abort()


def test_an_answer_of_another_type_is_named_as_maybe_not_the_agent():
    page = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 6\r\n\r\n<html>"
    with AgentAnswers([Say(page, then=HOLD)]) as agent:
        stream = subscribed(agent)
        stream.close()
    assert stream.odd_type == ("; the answer's Content-Type is 'text/html', not the agent's "
                               "application/json: is MESOS_AGENT_ENDPOINT a Mesos agent?")


# ---- the agent's unix socket ----

def test_calls_and_the_stream_go_over_the_agent_s_unix_socket(tmp_path):
    path = tmp_path / "agent.sock"
    with AgentAnswers([Say(ANSWER_202), Say(STREAM_HEAD + chunk(b"5\n"), then=HOLD)], unix_path=path) as agent:
        t = AgentTransport(AgentRoute(host="localhost", port=0, socket_path=str(path)), call_timeout_secs=CALL_SECS)
        try:
            assert t.post(b"{}") == CallResult(Outcome.ACCEPTED, 202)
            result, stream = t.subscribe(b"{}", 1.0, 1.0)
            assert result.outcome is Outcome.ACCEPTED and stream is not None
            try:
                assert within(BOUND_SECS, lambda: next(stream.chunks())) == b"5\n"
            finally:
                stream.abort()
                stream.close()
        finally:
            t.close()
    assert [h.line for h in agent.heard] == [b"POST /api/v1/executor HTTP/1.1"] * 2
    assert all(b"Host: localhost\r\n" in h.head + b"\r\n" for h in agent.heard)


def test_a_unix_socket_whose_agent_never_accepts_is_refused_at_once_in_its_own_words(tmp_path):
    """A unix socket's connect with no timeout waits while the listener's backlog is full;
    with one it fails at once, EAGAIN, which is not a process limit (as `no_room` says it)."""
    path = tmp_path / "agent.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(0)
    waiting = []
    try:
        while True:  # fill the backlog; none is accepted
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            waiting.append(s)
            try:
                s.connect(str(path))
            except BlockingIOError:
                break
        t = AgentTransport(AgentRoute(host="localhost", port=0, socket_path=str(path)))
        result, stream = within(BOUND_SECS, lambda: t.subscribe(b"{}", 0.3, 0.3))
    finally:
        for s in waiting:
            s.close()
        listener.close()
    assert stream is None and result == CallResult(
        Outcome.TRANSIENT, None, f"ConnectionRefusedError: {path}: the agent takes no connection now "
                                 "(its socket's backlog is full: is the agent stopped?)")


def test_an_agent_that_never_accepts_over_tcp_is_given_up_at_the_connect_timeout():
    """An agent whose listen queue is full (stopped, or its accept loop stuck): the kernel
    drops the SYN and a connect without a timeout would wait for good; the connect timeout
    ends it (`_connect` gives the connection its timeout, which `_by_address` passes on)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    waiting = []
    try:
        for _ in range(100):  # fill the queue; none is accepted
            s = socket.socket()
            s.settimeout(0.2)
            waiting.append(s)
            try:
                s.connect(listener.getsockname())
            except TimeoutError:
                break
        else:
            pytest.skip("this kernel took 100 connections on a listen(0) queue: none is left full to connect to")
        t = AgentTransport(AgentRoute(host="127.0.0.1", port=listener.getsockname()[1]))
        started = time.monotonic()
        result, stream = within(BOUND_SECS, lambda: t.subscribe(b"{}", 0.3, 0.3))
        took = time.monotonic() - started
    finally:
        for s in waiting:
            s.close()
        listener.close()
    assert stream is None and result == CallResult(Outcome.TRANSIENT, None, "TimeoutError: timed out")
    assert took >= 0.3
