"""The reason `healthcheck/loopback.connect` gives when no loopback address took the
connection (`_reason`, pure: what each address answered, in the order tried)."""
from __future__ import annotations

import errno
import os

import pytest

from healthcheck.loopback import NoSocket, _reason

V4, V6 = "127.0.0.1", "::1"


def refused() -> OSError:
    return ConnectionRefusedError(errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED))


def error(number: int) -> OSError:
    return OSError(number, os.strerror(number))


@pytest.mark.parametrize("failures, reason", [
    ([(V4, refused()), (V6, refused())],
     "connection refused (nothing listens on 127.0.0.1:80 or [::1]:80)"),
    ([(V4, refused()), (V6, error(errno.EADDRNOTAVAIL))],  # a host without IPv6
     "connection refused (nothing listens on 127.0.0.1:80; [::1]:80: Cannot assign requested address)"),
    # The local ports used up: before, "connection refused (nothing listens on [::1]:80;
    # 127.0.0.1:80: Cannot assign requested address)", which sent one looking for a listener.
    ([(V4, error(errno.EADDRNOTAVAIL)), (V6, refused())],
     "no local port left to connect from (127.0.0.1:80: Cannot assign requested address; "
     "nothing listens on [::1]:80)"),
    ([(V4, error(errno.EADDRNOTAVAIL)), (V6, error(errno.EADDRNOTAVAIL))],
     "no local port left to connect from (127.0.0.1:80: Cannot assign requested address; "
     "[::1]:80: Cannot assign requested address)"),
    ([(V4, error(errno.ENETUNREACH)), (V6, error(errno.ENETUNREACH))],  # a loopback never brought up
     "no loopback address could be reached (127.0.0.1:80: Network is unreachable; "
     "[::1]:80: Network is unreachable)"),
    ([(V4, error(errno.ENETUNREACH)), (V6, refused())],
     "127.0.0.1 could not be reached (127.0.0.1:80: Network is unreachable; nothing listens on [::1]:80)"),
    ([(V4, NoSocket(error(errno.EMFILE))), (V6, refused())],
     "127.0.0.1 could not be reached (127.0.0.1:80: Too many open files; nothing listens on [::1]:80)"),
])
def test_the_reason_leads_with_what_127_0_0_1_answered_and_keeps_the_order_tried(failures, reason):
    unreachable = _reason(80, failures)
    assert unreachable.reason == str(unreachable) == reason
