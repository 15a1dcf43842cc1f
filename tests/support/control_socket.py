"""`stoker kill` and `stoker restart` from inside the test process: a request on a sandbox's
control socket, whose supervisor is this process (a `HostSession` the test opened, or a
`LocalRun` it runs)."""
from __future__ import annotations

import os
from pathlib import Path

from executor.events import ControlReply
from executor.host.controlclient import ask, connect
from executor.host.controlwire import ControlRequest
from executor.host.sandbox import open_stoker_dir


def ask_all(sandbox: Path, request: ControlRequest) -> list[ControlReply]:
    """Every answer the supervisor (this process) gives to `request`, to the last one."""
    fd = open_stoker_dir(sandbox)
    try:
        sock = connect(fd, str(sandbox), os.getpid())
    finally:
        os.close(fd)
    with sock:
        return list(ask(sock, request))
