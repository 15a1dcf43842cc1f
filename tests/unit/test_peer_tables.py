"""`executor/observe/peers.py` on /proc/net/tcp tables written here, in the kernel's own form:
which entries are a peer's socket (held by a process, in a state that is a connection,
connected to the observer's end) and which are not; the real tables are read by
tests/integration/test_observe_peers.py."""
from __future__ import annotations

import ipaddress

import pytest

from executor.observe.peers import _written, peer_uid

HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
PEER, SERVER = ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv4Address("127.0.0.2")


def _entry(n: int, state: str, uid: int, inode: int, local: str | None = None, remote: str | None = None) -> str:
    local = local or _written(PEER, 40000)
    remote = remote or _written(SERVER, 1338)
    return (f"   {n}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000 {uid:5d} 0 {inode} "
            "1 0000000000000000 20 4 30 10 -1\n")


@pytest.fixture
def tables(tmp_path):
    def write(*entries: str, tcp6: tuple[str, ...] = ()) -> str:
        (tmp_path / "tcp").write_text(HEADER + "".join(entries))
        (tmp_path / "tcp6").write_text(HEADER + "".join(tcp6))
        return str(tmp_path)
    return write


def test_the_established_socket_held_by_a_process_is_the_peer_s(tables):
    proc_net = tables(_entry(0, "01", 1001, 5555))
    assert peer_uid("127.0.0.1", 40000, 1338, proc_net, server_host="127.0.0.2") == 1001
    assert peer_uid("127.0.0.1", 40000, 1338, proc_net) == 1001  # the observer's address unknown: its port
    assert peer_uid("127.0.0.1", 40001, 1338, proc_net) is None


@pytest.mark.parametrize("state", ["06", "07", "0A"])  # TIME_WAIT, CLOSE, LISTEN
def test_a_socket_in_a_state_that_is_no_connection_is_no_one_s(tables, state):
    proc_net = tables(_entry(0, "01", 1001, 5555), _entry(1, state, 2002, 6666))
    assert peer_uid("127.0.0.1", 40000, 1338, proc_net, server_host="127.0.0.2") == 1001


def test_a_socket_no_process_holds_any_more_is_no_one_s(tables):
    proc_net = tables(_entry(0, "01", 1001, 5555), _entry(1, "08", 2002, 0))  # CLOSE_WAIT, inode 0
    assert peer_uid("127.0.0.1", 40000, 1338, proc_net) == 1001


def test_two_owners_of_the_peer_s_address_are_no_answer_and_the_observer_s_address_tells_them_apart(tables):
    elsewhere = _written(ipaddress.IPv4Address("10.0.0.9"), 1338)
    proc_net = tables(_entry(0, "01", 1001, 5555), _entry(1, "01", 2002, 6666, remote=elsewhere))
    assert peer_uid("127.0.0.1", 40000, 1338, proc_net) is None  # same port elsewhere: two owners
    assert peer_uid("127.0.0.1", 40000, 1338, proc_net, server_host="127.0.0.2") == 1001


def test_a_line_of_the_least_fields_is_read_and_a_shorter_one_is_not(tables):
    local, remote = _written(PEER, 40000), _written(SERVER, 1338)
    least = f"   0: {local} {remote} 01 00000000:00000000 00:00000000 00000000  1001 0 5555\n"
    short = f"   1: {local} {remote} 01 00000000:00000000 00:00000000 00000000  2002 0\n"
    assert peer_uid("127.0.0.1", 40000, 1338, tables(least)) == 1001
    assert peer_uid("127.0.0.1", 40000, 1338, tables(short)) is None


def test_an_ipv4_peer_s_dual_stack_socket_is_read_from_tcp6(tables):
    mapped = ipaddress.IPv6Address("::ffff:127.0.0.1")
    entry = _entry(0, "01", 1003, 7777, local=_written(mapped, 40000),
                   remote=_written(ipaddress.IPv6Address("::ffff:127.0.0.2"), 1338))
    proc_net = tables(tcp6=(entry,))
    assert peer_uid("127.0.0.1", 40000, 1338, proc_net, server_host="127.0.0.2") == 1003
    assert peer_uid("::ffff:127.0.0.1", 40000, 1338, proc_net, server_host="::ffff:127.0.0.2") == 1003
