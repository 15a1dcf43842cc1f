#!/usr/bin/env python3
"""serverset_task: a task process for the service-discovery tests that reads its own ServerSet.

    python tests/support/serverset_task.py ENSEMBLE PATH OUT [PORT...]

It opens a ZooKeeper session of its own, then creates `ready` in its working directory (the
sandbox: the job's health check waits for it), and runs until SIGTERM. On SIGTERM it notes
the wall-clock time, lists PATH's members through its session at once (the ServerSet as any
client sees it while the process is being stopped), writes `{"sigterm_wall": ..., "members":
[...], "read_wall": ...}` to OUT (OUT.tmp, then renamed) and exits 0. The PORTs are only there
so that the job requests them (`{{thermos.ports[NAME]}}`).

Stoker must have deleted the task's member before the SIGTERM: `members` is then empty. It
needs kazoo, so run it with the tests' interpreter (`sys.executable`).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError


def main(argv: list[str]) -> int:
    ensemble, path, out = argv[1], argv[2], Path(argv[3])
    got_term = threading.Event()
    at: list[float] = []

    def on_term(_signum: int, _frame: object) -> None:
        at.append(time.time())
        got_term.set()

    signal.signal(signal.SIGTERM, on_term)
    zk = KazooClient(hosts=ensemble, timeout=4.0)
    zk.start(timeout=20)
    Path("ready").write_text("connected\n")
    got_term.wait()
    try:
        members = sorted(zk.get_children(path))
    except NoNodeError:
        members = []
    result = {"sigterm_wall": at[0], "members": members, "read_wall": time.time()}
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, out)
    zk.stop()
    zk.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
