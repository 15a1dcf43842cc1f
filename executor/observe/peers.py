"""Who is at the other end of a loopback connection: the uid of the peer's socket.

For `stoker observe --show-tasks-to owner`. A TCP connection from this host is two sockets
in this network namespace, and the kernel lists each with its owner's uid (the effective
uid of the process that made it: a socket handed to another process, by fork or over a
Unix socket, is still its maker's) in /proc/net/tcp (IPv4) and /proc/net/tcp6 (IPv6, and
an IPv6 socket connected to an IPv4-mapped address, `::ffff:127.0.0.1`): the
peer's is the entry whose local address and port are the peer's and whose remote address
and port are the observer's end of the connection (the port alone when that cannot be
told): another user's socket may have the peer's address and port, connected elsewhere
(connect() shares a local port among different destinations). No process is scanned; the file is read to its end (about
150 bytes a socket; its cost is in docs/benchmarks.md). A peer whose entry is not there (it
closed the connection, or it is on another host or in another network namespace, where its
socket is not listed here), or that two entries of different owners match, is unknown:
`None`, which sees nothing. Only a socket a process still holds counts: one in TIME_WAIT
(listed as uid 0) or closed by its process (inode 0) is no one's.

The addresses are written as the kernel keeps them: each 32-bit word of the address in the
host's byte order, in hex; the port in hex.
"""
from __future__ import annotations

import ipaddress
import struct

PROC_NET = "/proc/net"
_NOT_A_PEER = {"06", "07", "0A"}  # TIME_WAIT, CLOSE (no owner: uid 0), LISTEN


def _written(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    """`address`:`port` as /proc/net/tcp{,6} writes it."""
    packed = address.packed
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{w:08X}" for w in words) + f":{port:04X}"


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(host: str) -> Address | None:
    """`host` as an address (an IPv4-mapped one as IPv4); None when it is not one."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _in_tcp6(address: Address) -> ipaddress.IPv6Address:
    return address if isinstance(address, ipaddress.IPv6Address) else ipaddress.IPv6Address(f"::ffff:{address}")


def peer_uid(peer_host: str, peer_port: int, server_port: int, proc_net: str = PROC_NET,
             server_host: str = "") -> int | None:
    """The uid owning the socket at `peer_host`:`peer_port` connected to this host's port
    `server_port` (at `server_host`, the observer's end of the connection, when known: a
    socket of another user's may share the peer's address and port, connected elsewhere);
    None when it is not listed, or is listed twice with two owners. An IPv4 peer's socket
    may be an IPv6 one connected to an IPv4-mapped address (`::ffff:a.b.c.d`: a dual-stack
    client, as Java's by default), listed in tcp6 in that form."""
    peer, server = _address(peer_host), _address(server_host)
    if peer is None:
        return None
    tables = [("tcp6", _in_tcp6)] if peer.version == 6 else [("tcp", lambda a: a), ("tcp6", _in_tcp6)]
    owners: set[int] = set()
    try:
        for name, form in tables:
            remote = _written(form(server), server_port) if server is not None and server.version == peer.version \
                else f":{server_port:04X}"
            owners |= _owners(f"{proc_net}/{name}", _written(form(peer), peer_port), remote)
    except OSError:
        return None
    return owners.pop() if len(owners) == 1 else None


def _owners(path: str, local: str, remote: str) -> set[int]:
    """The uids of the sockets `path` lists at `local` connected to `remote` (ADDRESS:PORT,
    or :PORT at any address), held by a
    process (not TIME_WAIT, CLOSE or LISTEN; inode not 0). Raises OSError."""
    owners: set[int] = set()
    with open(path, encoding="ascii", errors="replace") as table:
        for line in table:
            if local not in line:  # most lines: one test, no split
                continue
            fields = line.split()
            if len(fields) >= 10 and fields[1] == local and fields[2].endswith(remote) \
                    and fields[3] not in _NOT_A_PEER and fields[7].isdigit() and fields[9] != "0":
                owners.add(int(fields[7]))  # inode 0: no process holds it any more
    return owners
