"""A real AF_UNIX datagram socket in the abstract namespace standing in for systemd's
`$NOTIFY_SOCKET` (tests/unit/test_sdnotify.py, tests/unit/test_readyfd.py): what
`executor/host/sdnotify.py` sends is read back from it, one datagram a message."""
from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator


@contextlib.contextmanager
def notify_socket(tag: str) -> Iterator[tuple[str, socket.socket]]:
    """The socket's name (without its `@`) and the bound socket, reads bounded by 5 s; closed
    on the way out. `tag` keeps two tests' names apart (a tmp_path's name)."""
    name = f"stoker-test-{os.getpid()}-{tag}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        yield name, sock
    finally:
        sock.close()
