"""The control socket's protocol (executor/host/controlwire.py): requests and replies as
JSON lines, and every malformed request refused with a message that says why."""
from __future__ import annotations

import pytest

from executor.events import ControlReply
from executor.host.controlwire import (
    MAX_LINE,
    ControlError,
    KillControl,
    RestartControl,
    encode_reply,
    encode_request,
    parse_reply,
    parse_request,
)


@pytest.mark.parametrize("request_", [KillControl(), KillControl(2.5), KillControl(0.0),
                                      RestartControl("web"), RestartControl("a b/ü")])
def test_requests_round_trip(request_):
    line = encode_request(request_)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_request(line.rstrip(b"\n")) == request_


BAD = {
    b"not json": "a request is one JSON object per line",
    b"[1, 2]": "a request is one JSON object per line",
    b'{"op": "reboot"}': "unknown op 'reboot' (kill or restart)",
    b'{"process": "web"}': "unknown op None (kill or restart)",
    b'{"op": "kill", "grace_secs": -1}': "grace_secs -1 is not a number of seconds in 0..604800",
    b'{"op": "kill", "grace_secs": "5"}': "grace_secs '5' is not a number of seconds in 0..604800",
    b'{"op": "kill", "grace_secs": true}': "grace_secs True is not a number of seconds in 0..604800",
    b'{"op": "kill", "grace_secs": 1e9}': "grace_secs 1000000000.0 is not a number of seconds in 0..604800",
    b'{"op": "kill", "grace_secs": NaN}': "grace_secs nan is not a number of seconds in 0..604800",
    # an int no float holds: OverflowError, which ended the supervisor's control server
    b'{"op": "kill", "grace_secs": %s}' % (b"9" * 400): "grace_secs 99999999999999999999...(400 digits) is not a number of seconds in 0..604800",
    b'{"op": "kill", "grace_secs": -%s}' % (b"9" * 400): "grace_secs -9999999999999999999...(401 digits) is not a number of seconds in 0..604800",
    b'{"op": "restart"}': "process None is not a process name",
    b'{"op": "restart", "process": ""}': "process '' is not a process name",
    b'{"op": "restart", "process": 7}': "process 7 is not a process name",
    b"x" * (MAX_LINE + 1): f"a request is at most {MAX_LINE} bytes",
    b'{"op": "kill", "grace_secs": 604800.5}': "grace_secs 604800.5 is not a number of seconds in 0..604800",
    b'{"op": "restart", "process": "%s"}' % (b"w" * 257): f"process {'w' * 257!r} is not a process name",
}


@pytest.mark.parametrize("line, message", BAD.items(), ids=[m for m in BAD.values()])
def test_malformed_requests_are_refused_saying_why(line, message):
    with pytest.raises(ControlError) as caught:
        parse_request(line)
    assert str(caught.value) == message


def padded(doc: bytes, size: int) -> bytes:
    return doc[:-1] + b" " * (size - len(doc)) + b"}"


@pytest.mark.parametrize("line, request_", [
    (padded(b'{"op": "kill"}', MAX_LINE), KillControl()),  # exactly MAX_LINE bytes
    (b'{"op": "kill", "grace_secs": 604800}', KillControl(604800.0)),  # seven days, the longest grace
    (b'{"op": "kill", "grace_secs": 0}', KillControl(0.0)),
    (b'{"op": "restart", "process": "%s"}' % (b"w" * 256), RestartControl("w" * 256)),  # the longest name
])
def test_the_largest_requests_that_are_still_served(line, request_):
    assert len(line) <= MAX_LINE
    assert parse_request(line) == request_


@pytest.mark.parametrize("reply", [
    ControlReply(ok=True, done=False, message="killing task t.0"),
    ControlReply(ok=True, done=True, message="task t.0 KILLED", state="KILLED"),
    ControlReply(ok=True, done=True, message="run 4 started", process="web", run=4, pid=4321),
    ControlReply(ok=False, done=True, message="no such process", process="nope"),
])
def test_replies_round_trip_and_leave_out_what_is_not_set(reply):
    line = encode_reply(reply)
    assert b"null" not in line
    assert parse_reply(line) == reply


@pytest.mark.parametrize("line", [b"garbage", b"{}", b'{"ok": 1, "done": true, "message": ""}',
                                  b'{"ok": true, "done": true}', b"[]"])
def test_anything_else_is_not_a_reply(line):
    assert parse_reply(line) is None


def test_a_reply_s_odd_fields_are_dropped_not_trusted():
    reply = parse_reply(b'{"ok": true, "done": true, "message": "m", "pid": "1", "run": true}')
    assert reply == ControlReply(ok=True, done=True, message="m")
