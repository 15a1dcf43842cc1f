"""Where a check and a lifecycle POST connect: the loopback addresses themselves, never
the name `localhost` (docs/contract.md §5).

The HTTP and TCP checks and the lifecycle endpoints address the task as `localhost:PORT`
(Aurora's URL; the Host header and every reason say so), but the name is not resolved:
`connect` tries 127.0.0.1, then ::1, within one budget. A name goes through the host's NSS
(/etc/nsswitch.conf, /etc/hosts, DNS) on every call: an image without a `localhost` line,
or `hosts: dns files`, asks DNS, whose wait (5 s times 2 attempts by default) no socket
timeout bounds, and whose answer (any address, another host's too) the check would then
call. Two fixed addresses cannot leave the host nor wait for a resolver, serve a task that
listens on either, and cost two socket calls where the name cost a getaddrinfo too.
"""
from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable

from config.logline import log_event
from healthcheck.base import STALL_SECS, secs

logger = logging.getLogger(__name__)

# The order tried: IPv4 first, where servers listen most (0.0.0.0 and dual-stack [::] take it).
ADDRESSES = ("127.0.0.1", "::1")
ORDER = "127.0.0.1, then ::1"  # for inspect and the docs: the one spelling of the order

# What sends a connect on to the next address: nothing listens there (refused), or the
# address is not there at all (no route, the loopback down, no IPv6). Any other error is
# the answer of what is there (a reset: something accepted and dropped it) or this
# process's own trouble, and ends the attempt as it is.
_TRY_NEXT = frozenset({errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH,
                       errno.ENETDOWN, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT})


class Unreachable(ConnectionError):
    """No loopback address took the connection; `reason` says what each one answered, e.g.
    "connection refused (nothing listens on 127.0.0.1:8080 or [::1]:8080)"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoSocket(OSError):
    """This process could not open a socket at all (its descriptor limit, the host's, no
    memory): no address was tried, and it says nothing of the task."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(exc.errno, exc.strerror)
        self.reason = f"Stoker could not open a socket ({exc.strerror or exc}): no connection was tried"


def _where(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _reason(port: int, failures: list[tuple[str, OSError]]) -> Unreachable:
    """What each address answered, in the order tried, led by what the first (127.0.0.1)
    answered: a refusal there is "connection refused"; its EADDRNOTAVAIL is no local port
    left to connect from (every ephemeral port in use: 127.0.0.1 itself is always there),
    whatever ::1 answered after it."""
    parts: list[str] = []
    refused_before = False
    for address, exc in failures:
        refused = isinstance(exc, ConnectionRefusedError)
        if refused and refused_before:
            parts[-1] += f" or {_where(address, port)}"
        else:
            parts.append(f"nothing listens on {_where(address, port)}" if refused
                         else f"{_where(address, port)}: {exc.strerror or exc}")
        refused_before = refused
    first_address, first = failures[0]
    if isinstance(first, ConnectionRefusedError):
        lead = "connection refused"
    elif first.errno == errno.EADDRNOTAVAIL:  # connect tries 127.0.0.1 first: `first` is its
        lead = "no local port left to connect from"
    elif any(isinstance(exc, ConnectionRefusedError) for _, exc in failures):
        lead = f"{first_address} could not be reached"
    else:
        lead = "no loopback address could be reached"
    return Unreachable(f"{lead} ({'; '.join(parts)})")


def connect(port: int, left: Callable[[], float]) -> socket.socket:
    """A TCP connection to `port` on 127.0.0.1, else on ::1, with no name resolved.

    `left()` gives the seconds the attempt has left for each try (or raises TimeoutError
    when none are); a try that times out ends the attempt (TimeoutError): the address was
    reachable, its listener did not accept in time. Refused, or the address not there (no
    route, no IPv6, the loopback interface down), moves on to the next address; when none
    is left, Unreachable says what each one answered. Any other error ends the attempt as
    it is: a reset (something there accepted, then dropped the connection) is the task's
    answer. A socket this process cannot open (its descriptor limit, a seccomp filter)
    moves on too; when no address could be tried at all, NoSocket says so: no connection
    problem, and none of the task's. The socket returned has the last timeout set: the
    caller sets its own.
    """
    failures: list[tuple[str, OSError]] = []
    for address in ADDRESSES:
        try:
            return _try(address, port, left)
        except NoSocket as exc:  # the next address may take a socket (a filter on one family)
            failures.append((address, exc))
        except OSError as exc:
            if exc.errno not in _TRY_NEXT:
                raise  # a timeout (errno None), a reset: the answer of what is there
            failures.append((address, exc))
    if all(isinstance(exc, NoSocket) for _, exc in failures):
        raise failures[0][1]  # no address could even be tried
    raise _reason(port, failures)


def _try(address: str, port: int, left: Callable[[], float]) -> socket.socket:
    """A connection to `address`:`port`; the socket closed on every error."""
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)  # TCP: the default
    except OSError as exc:
        if exc.errno == errno.EAFNOSUPPORT:  # a kernel without IPv6: this address is not there
            raise
        raise NoSocket(exc) from exc  # EMFILE, ENFILE, ENOBUFS, ENOMEM: ours, not the task's
    try:
        sock.settimeout(left())
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def connect_within(port: int, timeout_secs: float) -> socket.socket:
    """`connect`, every try within `timeout_secs` from now, all of them together."""
    due = time.monotonic() + timeout_secs

    def left() -> float:
        remaining = due - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no connection within {timeout_secs} s")
        return remaining

    return connect(port, left)


class Deadline:
    """A check's attempt's time, `timeout_secs` from now, with the pause rule (docs/contract.md
    §5): time this process was not running is not the task's. A step that starts, or ends,
    more than STALL_SECS past the deadline was not running at it (stopped by SIGSTOP or a
    debugger, paused with its host or its frozen cgroup, starved of CPU), and what it waits
    for may be there unread: the attempt gets `timeout_secs` again from that moment, once, so
    every attempt stays bounded. The TCP check's (`connect`) and the HTTP check's (whose every
    socket step it bounds: `healthcheck.http_check`); `clock` is a test's."""

    def __init__(self, timeout_secs: float, what: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        self._timeout_secs, self._what, self._clock = timeout_secs, what, clock  # what: the check, for the log
        self._due = clock() + timeout_secs
        self._stalled = False
        self.expired = False

    def left(self) -> float:
        """Seconds left of the attempt; raises TimeoutError (`expired`) when none are."""
        self.resumed()
        left = self._due - self._clock()
        if left <= 0:
            self.expired = True
            raise TimeoutError("the health check's deadline passed")
        return left

    def resumed(self) -> bool:
        """True when this process was not running at the deadline (the first time only):
        the attempt gets its timeout again from now, one INFO line says so."""
        late = self._clock() - self._due
        if self._stalled or late <= STALL_SECS:
            return False
        self._stalled = True
        log_event(logger, logging.INFO, "health_check_stalled", check=self._what,
                  timeout_secs=secs(self._timeout_secs), late_secs=round(late, 3),
                  reason="this process was not running at the check's deadline (stopped "
                         "or starved): the check gets its timeout again")
        self._due = self._clock() + self._timeout_secs
        return True

    def connect(self, port: int) -> socket.socket:
        """`connect` to `port`, every try within what is left of the attempt; one that timed
        out while this process was not running is tried again in the time given again."""
        while True:
            try:
                return connect(port, self.left)
            except TimeoutError:
                if not self.resumed():
                    self.expired = True
                    raise
