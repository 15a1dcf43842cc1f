"""A FUSE request held by its server, in the mount namespace of a process under test (an
executor started under `unshare --mount`, so that the mount dies with it): whatever then
touches the mount point waits in D state (uninterruptible sleep), even SIGKILLed, until the
server lets go (`fuse_server.serve_held`). Needs root, unshare, nsenter and /dev/fuse.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stoker_proc import REPO
from tests.support.waiting import wait_for

UNSHARED = ["unshare", "--mount", "--propagation", "private"]  # before the executor's command

needs_fuse_namespaces = pytest.mark.skipif(
    shutil.which("unshare") is None or shutil.which("nsenter") is None or not os.path.exists("/dev/fuse"),
    reason="needs unshare, nsenter, FUSE")


def in_namespace_of(pid: int, code: str, *args: str) -> subprocess.Popen:
    """`python -c code args` in the mount namespace of `pid`."""
    return subprocess.Popen(["nsenter", f"--mount=/proc/{pid}/ns/mnt", "--", sys.executable, "-c", code, *args],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def serve_held_in(pid: int, point: Path, hold_secs: float, ready: Path) -> subprocess.Popen:
    """A FUSE server mounted at `point` in the namespace of `pid`, holding the first request
    after INIT `hold_secs` (`ready` written once it is read); once it is mounted there. The
    caller kills and waits for it (the held request then ends with ENOTCONN)."""
    server = in_namespace_of(pid, "import sys; from tests.support.fuse_server import serve_held; "
                                  "serve_held(sys.argv[1], float(sys.argv[2]), sys.argv[3])",
                             str(point), str(hold_secs), str(ready))
    try:
        wait_for(lambda: f" {point} " in Path(f"/proc/{pid}/mountinfo").read_text(), 10,
                 message="the FUSE mount, in the namespace")
    except BaseException:
        server.kill()
        server.wait()
        raise
    return server
