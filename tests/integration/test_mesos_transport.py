"""The transport's own checks: the agent's URL from MESOS_AGENT_ENDPOINT, the bound wait for
SUBSCRIBE's answer, a token no header can carry."""
from __future__ import annotations

import pytest

from executor.mesos.transport import AgentTransport, BadToken, Outcome, _detail, agent_url
from executor.mesos.wire import Calls


@pytest.mark.parametrize("endpoint, url", [
    ("10.0.0.5:5051", "http://10.0.0.5:5051/api/v1/executor"),
    ("::1:5051", "http://[::1]:5051/api/v1/executor"),
    ("fe80::1:2:31000", "http://[fe80::1:2]:31000/api/v1/executor"),
])
def test_agent_url_splits_on_the_last_colon_and_brackets_ipv6(endpoint, url):
    assert agent_url(endpoint) == url


def test_agent_url_refuses_an_endpoint_without_a_port():
    with pytest.raises(ValueError, match="not host:port"):
        agent_url("localhost")


@pytest.mark.parametrize("endpoint", ["127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1:\u0665\u0660"])
def test_agent_url_refuses_a_port_no_agent_can_listen_on(endpoint):
    """Not a settings error at start, the port out of range was tried for 5 s as if the agent
    were down ('Connection refused'), then exit 3: never subscribed (docs/contract.md §9)."""
    with pytest.raises(ValueError, match="not host:port"):
        agent_url(endpoint)


def test_the_answer_to_subscribe_has_a_timeout_and_the_settled_stream_none(sim):
    """The agent's heartbeats come every 30 minutes: an idle stream is healthy. Only the
    wait for SUBSCRIBE's answer and first event is bounded (docs/mesos.md §7, §15)."""
    transport = AgentTransport(sim.endpoint)
    result, stream = transport.subscribe(Calls(sim.framework_id, sim.executor_id).subscribe([], []),
                                         1.0, 0.5)
    assert result.outcome is Outcome.ACCEPTED and stream is not None
    try:
        assert stream._sock is not None and stream._sock.gettimeout() == 0.5
        stream.settle()  # the driver does this at the first event
        assert stream._sock.gettimeout() is None
    finally:
        stream.abort()
        stream.close()


@pytest.mark.parametrize("token, what", [
    ("t0k\r\nX-Forged: 1", "a control character at position 4 of 16"),
    ("t0k t0k", "a space at position 4 of 7"),
    ("t0k\u00e9", "a non-ASCII character at position 4 of 4"),
])
def test_a_token_no_header_can_carry_is_refused_without_showing_it(token, what):
    with pytest.raises(BadToken) as refused:
        AgentTransport("127.0.0.1:5051", token)
    assert what in str(refused.value) and "t0k" not in str(refused.value)


@pytest.mark.parametrize("at", [0, 1000, 1020, 1023, 1024])
def test_an_answer_quoted_in_a_log_line_never_holds_the_token_even_cut_in_two(at):
    token = "s3cr3t-jwt-token-value"
    body = b"x" * at + b"Authorization: Bearer " + token.encode() + b" y" * 600
    detail = _detail(body, token)
    assert token[:2] not in detail and detail.endswith(" ...")
    assert _detail(b"ends with s", "secret") == "ends with s"  # a whole answer is not cut
