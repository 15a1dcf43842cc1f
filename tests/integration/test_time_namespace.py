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
from executor.host.sandbox import open_stoker_dir
from executor.procs import pidsignal
from executor.task.heldfile import write_held
me = os.getpid()
write_held(open_stoker_dir(Path(sys.argv[1]), create=True), "t1me", {me: pidsignal.read_stat(me)[2]})  # as a supervisor hands it
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
        assert list(alive_held(read_held(tmp_path, "t1me"))) == [child.pid]
    finally:
        child.kill()
        child.wait()


UNALIGNED = """
import ctypes, json, os, signal, sys
from pathlib import Path
if ctypes.CDLL(None, use_errno=True).unshare(0x80) != 0:  # CLONE_NEWTIME: for the children
    sys.exit(f"unshare: errno {ctypes.get_errno()}")
with open("/proc/self/timens_offsets", "w") as f:
    f.write("boottime 1000 5000000\\n")  # 1000.005 s: not a whole number of clock ticks
for _ in range(8):
    r, w = os.pipe()
    if os.fork() == 0:  # in the namespace: what a supervisor there records of itself
        ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL: gone with the test's child
        from executor.host.identity import own_identity
        from executor.procs import pidsignal
        from executor.host.sandbox import open_stoker_dir
        from executor.task.heldfile import write_held
        me = own_identity()
        (Path(sys.argv[1]) / str(me.pid)).mkdir()
        stoker_dir = open_stoker_dir(Path(sys.argv[1]) / str(me.pid), create=True)
        write_held(stoker_dir, "t1me", {me.pid: pidsignal.read_stat(me.pid)[2]})
        os.write(w, json.dumps([me.pid, me.start_ticks, me.boot_id]).encode())
        while True:
            signal.pause()
    os.close(w)
    print(os.read(r, 1000).decode(), flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(not _time_namespaces(), reason="no time namespaces here (needs root and Linux 5.6)")
def test_a_process_in_a_namespace_whose_offset_is_not_whole_ticks_is_alive_outside(tmp_path):
    """A restored container's boot-time offset is any number of nanoseconds (CRIU keeps its
    clocks): the kernel rounds each start shifted by it, so the host's count read inside
    was one tick off for about half of the processes, and `stoker ps` outside called a
    live supervisor LOST (and its held list named nothing)."""
    from executor.task.heldfile import alive_held, read_held

    ns = subprocess.Popen([sys.executable, "-c", UNALIGNED, str(tmp_path)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert ns.stdout is not None
        seen = [json.loads(ns.stdout.readline()) for _ in range(8)]
        assert [pid for pid, start, boot in seen if not is_alive(pid, start, boot)] == []
        assert {pid: list(alive_held(read_held(tmp_path / str(pid), "t1me"))) for pid, _, _ in seen} == {
            pid: [pid] for pid, _, _ in seen}
    finally:
        ns.kill()
        ns.wait()


@pytest.mark.skipif(not _time_namespaces(), reason="no time namespaces here (needs root and Linux 5.6)")
def test_the_boot_clock_a_checkpoint_records_reads_the_same_from_another_time_namespace():
    """A header's and a restart's `boot` (identity.boot_secs) are the host's boot clock: a
    supervisor under `unshare --time` and `stoker ps` outside count an age from the same
    moment (the namespace's own clock would put it OFFSET_SECS later)."""
    from executor.host.identity import boot_secs

    before = boot_secs()
    inside = subprocess.run(
        ["unshare", "--time", "--boottime", str(OFFSET_SECS), sys.executable, "-c",
         "from executor.host.identity import boot_secs; print(boot_secs())"],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    after = boot_secs()
    assert before - 0.02 <= float(inside.stdout) <= after + 0.02, (before, inside.stdout, after)
