"""Checks and lifecycle POSTs on hosts whose name resolution is broken: each setup runs in a
mount and network namespace of its own (`tests/support/resolver_rig.py`: its own /etc/hosts,
resolv.conf and nsswitch.conf, a DNS server that drops or lies, the loopback with or without
IPv6, or never brought up), with real servers and the real TCP check, HTTP check and lifecycle POST.

They address `localhost:PORT` but connect to 127.0.0.1, then ::1, resolving no name
(`healthcheck.loopback`): no setup sends a question to DNS, waits for one, or reaches
another host, and a task listening on either loopback address is found whatever /etc/hosts
says. When neither address takes the connection, the reason says what each one answered.

One child runs every setup in turn (about a third of a second in all)."""
from __future__ import annotations

from typing import Any

import pytest

from tests.support.resolver_rig import PORT, namespaces_unavailable, results_of, start_setups

pytestmark = pytest.mark.timeout(60)

_WHY_NOT = namespaces_unavailable()
if _WHY_NOT:
    pytest.skip(f"no private namespaces: {_WHY_NOT}", allow_module_level=True)

NO_LOCALHOST = "127.0.0.1 vm\n"  # a minimal image's /etc/hosts: the name is DNS's to answer
SETUPS: dict[str, dict[str, Any]] = {
    # glibc asks DNS for `localhost`; a silent server holds the check for timeout x attempts
    # (the default is 5 s x 2), which no socket timeout bounds.
    "no localhost line, DNS silent": {
        "hosts": NO_LOCALHOST, "resolv": "nameserver 127.0.0.53\noptions timeout:1 attempts:1\n",
        "listen": ["127.0.0.1"]},
    # DNS asked first, answering `localhost` with another host: the checks and /quitquitquit
    # would go there.
    "hosts: dns files, DNS says another host": {
        "nss": "dns files", "dns_answer": "192.0.2.10", "listen": ["127.0.0.1"]},
    # each address a connection waits on for the whole timeout (socket.create_connection
    # gives each its own), one after the other: three timeouts (the HTTP check's deadline
    # took the third for a stopped process and gave it another three)
    "localhost is three addresses that never accept": {
        "hosts": "".join(f"127.0.0.{i} localhost\n" for i in (2, 3, 4)), "stalled": ["127.0.0.2", "127.0.0.3", "127.0.0.4"],
        "listen": ["127.0.0.1"]},
    "localhost is ::1 only, the task on 127.0.0.1": {"hosts": "::1 localhost\n", "listen": ["127.0.0.1"]},
    "localhost is 127.0.0.1 only, the task on ::1": {"hosts": "127.0.0.1 localhost\n", "listen": ["::1"]},
    # the network steps come last, in this order (the rig takes them one way only)
    "no IPv6, nothing listens": {"hosts": "::1 localhost\n127.0.0.1 localhost\n", "network": "no_ipv6"},
    "loopback down": {"network": "fresh"},  # a network namespace whose `lo` was never set up
}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict[str, Any]]:
    return results_of(start_setups(SETUPS, tmp_path_factory.mktemp("resolver")))


def _made(results: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    got = results[name]
    if "unavailable" in got:
        pytest.skip(got["unavailable"])
    return got


@pytest.mark.parametrize("name", [n for n in SETUPS if SETUPS[n].get("listen")])
def test_the_task_is_reached_on_loopback_and_no_name_is_resolved(results, name):
    got = _made(results, name)
    assert got["tcp"] == [True, f"TCP connect to localhost:{PORT} succeeded"]
    assert got["http"] == [True, f"HTTP GET http://localhost:{PORT}/health answered HTTP 200"]
    assert got["post"] == [200, f"POST http://localhost:{PORT}/quitquitquit answered HTTP 200"]
    listening = SETUPS[name]["listen"][0]
    assert got["seen"] == [["GET", "/health", f"localhost:{PORT}", listening],  # Aurora's Host
                           ["POST", "/quitquitquit", f"localhost:{PORT}", listening]]
    assert got["dns_asked"] == []


def _reasons(got: dict[str, Any]) -> list[str]:
    assert got["tcp"][0] is False and got["http"][0] is False and got["post"][0] is None
    tails = [got["tcp"][1].removeprefix(f"TCP connect to localhost:{PORT}: "),
             got["http"][1].removeprefix(f"HTTP GET http://localhost:{PORT}/health: "),
             got["post"][1].removeprefix(f"POST http://localhost:{PORT}/quitquitquit failed: ")]
    assert tails[0] == tails[1] == tails[2], tails
    return tails


def test_without_ipv6_the_reason_names_both_addresses(results):
    got = _made(results, "no IPv6, nothing listens")
    reason = _reasons(got)[0]
    assert reason.startswith(f"connection refused (nothing listens on 127.0.0.1:{PORT}; [::1]:{PORT}: "), reason
    assert got["dns_asked"] == []


def test_a_loopback_that_is_down_is_said_so(results):
    reason = _reasons(_made(results, "loopback down"))[0]
    assert reason.startswith(f"no loopback address could be reached (127.0.0.1:{PORT}: "), reason
    assert f"; [::1]:{PORT}: " in reason
