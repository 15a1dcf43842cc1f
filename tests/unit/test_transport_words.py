"""The transport's words for the agent's answers: which HTTP status is retried and which is
refused for good (for a call and for SUBSCRIBE), how an answer is put in a log line (the
token never in it), and an error in words."""
from __future__ import annotations

import http.client

import pytest

from executor.mesos.transport import BadToken, CallResult, Outcome, _bearer, _classify, _detail, _error_words

ACCEPTED, TRANSIENT, REJECTED = Outcome.ACCEPTED, Outcome.TRANSIENT, Outcome.REJECTED


@pytest.mark.parametrize("status, call, subscribe", [
    (202, ACCEPTED, REJECTED),  # a call's own answer; SUBSCRIBE's is 200, and a 202 is not it
    (200, ACCEPTED, ACCEPTED),  # a proxy's 200 to a call: kept owed until its ACK, not dropped
    (201, ACCEPTED, REJECTED),
    (204, ACCEPTED, REJECTED),
    (299, ACCEPTED, REJECTED),
    (300, REJECTED, REJECTED),
    (301, REJECTED, REJECTED),
    (400, REJECTED, REJECTED),
    (401, REJECTED, REJECTED),
    (403, TRANSIENT, REJECTED),  # "not subscribed" to a call; to SUBSCRIBE: the token's claims
    (404, TRANSIENT, TRANSIENT),  # an agent still starting its routes
    (405, REJECTED, REJECTED),
    (415, REJECTED, REJECTED),
    (500, TRANSIENT, TRANSIENT),
    (501, REJECTED, REJECTED),  # not implemented: asking again gets the same
    (502, TRANSIENT, TRANSIENT),
    (503, TRANSIENT, TRANSIENT),
    (504, TRANSIENT, TRANSIENT),
    (599, TRANSIENT, TRANSIENT),
])
def test_each_status_is_accepted_retried_or_refused_as_a_call_and_as_subscribe(status, call, subscribe):
    assert _classify(status, 202) is call
    assert _classify(status, 200) is subscribe


def test_a_result_is_described_by_its_status_and_its_words():
    assert CallResult(TRANSIENT, None, "ConnectionRefusedError: refused").describe() == \
        "ConnectionRefusedError: refused"
    assert CallResult(REJECTED, 400, "no such framework").describe() == "HTTP 400: no such framework"
    assert CallResult(TRANSIENT, 503, "").describe() == "HTTP 503"


TOKEN = "s3cr3t-jwt"


def test_the_token_in_an_answer_is_written_token_and_the_rest_kept_as_sent():
    body = f"  Authorization: Bearer {TOKEN}\nagain {TOKEN}.  ".encode()
    assert _detail(body, TOKEN) == "Authorization: Bearer [token]\nagain [token]."
    assert _detail(body, None) == f"Authorization: Bearer {TOKEN}\nagain {TOKEN}."


def test_bytes_that_are_not_utf8_are_replaced_not_a_reason_to_fail():
    assert _detail(b"bad \xff\xfe byte", None) == "bad \ufffd\ufffd byte"


@pytest.mark.parametrize("kept", range(1, len(TOKEN)))
def test_a_cut_that_ends_in_the_token_s_first_characters_drops_them(kept):
    """An answer read up to the quoted bytes may end inside a token the replacement cannot
    see whole: the cut line ends before any beginning of it, however short."""
    body = ("x" * (1024 - kept) + TOKEN[:kept] + "y" * 10).encode()
    assert _detail(body, TOKEN) == "x" * (1024 - kept) + " ..."


def test_a_cut_that_ends_in_other_characters_keeps_them():
    body = ("x" * 1020 + "abcd" + "y" * 10).encode()
    assert _detail(body, TOKEN) == "x" * 1020 + "abcd ..."
    assert _detail(("x" * 1023 + "s" + "y").encode(), None) == "x" * 1023 + "s ..."


def test_an_answer_of_the_quoted_length_is_whole_and_not_cut():
    body = ("x" * 1022 + TOKEN[:2]).encode()
    assert _detail(body, TOKEN) == "x" * 1022 + TOKEN[:2]


def test_an_error_is_its_type_and_its_innermost_cause():
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as inner:
            raise http.client.RemoteDisconnected("wrapped") from inner
    except http.client.HTTPException as e:
        assert _error_words(e) == "RemoteDisconnected: [Errno 111] Connection refused"
    assert _error_words(TimeoutError()) == "TimeoutError: TimeoutError"
    said = http.client.RemoteDisconnected("wrapped")
    said.__cause__ = ConnectionResetError(104, "Connection reset by peer")  # a cause, no context
    assert _error_words(said) == "RemoteDisconnected: [Errno 104] Connection reset by peer"
    looped = ValueError("first")
    looped.__context__ = looped  # a cycle ends the walk
    assert _error_words(looped) == "ValueError: first"


@pytest.mark.parametrize("token", ["!", "~", "a!b~c", "eyJhbGciOi.J9.x-_"])
def test_a_token_of_printable_ascii_goes_in_the_header_as_it_is(token):
    assert _bearer(token) == f"Bearer {token}"


@pytest.mark.parametrize("char, what", [
    ("\x7f", "a control character"),  # DEL
    ("\x80", "a non-ASCII character"),
    ("\x1f", "a control character"),
    ("\x20", "a space"),
])
def test_the_first_character_no_header_can_carry_is_named_by_its_kind(char, what):
    with pytest.raises(BadToken) as refused:
        _bearer(f"ab{char}cd")
    assert str(refused.value) == f"the token holds {what} at position 3 of 5, which an HTTP header cannot carry"
