"""A supervisor in a time namespace of its own (`unshare --time`, a restored container) and
`stoker ps` / `status` / `kill` outside it, or the other way round: /proc/PID/stat counts
a process's start from the boot as the reader's namespace sees it, so each side read
another start for the same process, and a live supervisor was LOST to the other side
(and `stoker kill` refused it). Both sides now count as the host's namespace does."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from executor.host.identity import is_alive, own_identity
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(30)

OFFSET_SECS = 100000
CHILD = """
import json, sys
from executor.host.identity import is_alive, own_identity
parent = json.loads(sys.argv[1])
me = own_identity()
print(json.dumps({"pid": me.pid, "start": me.start_ticks, "boot": me.boot_id,
                  "sees_parent": is_alive(parent["pid"], parent["start"], parent["boot"])}), flush=True)
sys.stdin.read()
"""


def _time_namespaces() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    done = subprocess.run(["unshare", "--time", "--boottime", "1", "true"], capture_output=True, check=False)
    return done.returncode == 0


@pytest.mark.skipif(not _time_namespaces(), reason="no time namespaces here (needs root and Linux 5.6)")
def test_a_process_in_another_time_namespace_is_alive_to_either_side():
    me = own_identity()
    parent = json.dumps({"pid": me.pid, "start": me.start_ticks, "boot": me.boot_id})
    child = subprocess.Popen(
        ["unshare", "--time", "--boottime", str(OFFSET_SECS), sys.executable, "-c", CHILD, parent],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout is not None
        seen = json.loads(child.stdout.readline())
        assert seen["pid"] == child.pid  # unshare execs the interpreter: the same process
        assert seen["sees_parent"] is True
        assert is_alive(seen["pid"], seen["start"], seen["boot"])
    finally:
        child.kill()
        child.wait()


HOLDER = """
import os, sys
from pathlib import Path
from executor.procs import proctree
from executor.task.heldfile import write_held
me = os.getpid()
write_held(Path(sys.argv[1]), "t1me", {me: proctree.read_stat(me)[2]})  # as a supervisor hands it
print("written", flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(not _time_namespaces(), reason="no time namespaces here (needs root and Linux 5.6)")
def test_a_held_list_written_in_another_time_namespace_names_its_live_processes_outside(tmp_path):
    """The held list (`.stoker/held.json`) recorded each start as the supervisor's namespace
    counts it: `stoker status` and a re-run outside read another start for the same live
    process, and listed or killed none of what the watchdog held."""
    from executor.task.heldfile import alive_held, read_held

    child = subprocess.Popen(
        ["unshare", "--time", "--boottime", str(OFFSET_SECS), sys.executable, "-c", HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout is not None and child.stdout.readline() == b"written\n"
        assert alive_held(read_held(tmp_path, "t1me")) == [child.pid]
    finally:
        child.kill()
        child.wait()
