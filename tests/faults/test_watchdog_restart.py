"""The watchdog kept through a shortage of processes.

A watchdog that died while its task lived was started again at once; when that start
failed (no process to be had: a full pids cgroup, `ulimit -u`), the task ran without one for
the rest of its life, and a SIGKILL of the supervisor then left its processes running. The
keeper now tries again whenever the task is next idle (after each step of its owner), with
one ERROR line for the outage and one INFO line once a watchdog is up again. The ERROR
line names no file for a fork refused (EAGAIN), as Popen's error did: posix_spawn's names
`/bin/sh` in every error, as if the shell were at fault.
"""
from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.limits import KEEP_LOG_LINES, pids_cgroup
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.faults

CHILD = r"""
import json, logging, os, signal, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from executor.procs.supervisor import Supervisor
cg, sandbox = Path(sys.argv[1]), Path(sys.argv[2])
(cg / "cgroup.procs").write_text(str(os.getpid()))
""" + KEEP_LOG_LINES + r"""
def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False

def until(predicate):
    deadline = time.monotonic() + 5
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    return predicate()

sup = Supervisor(sandbox=sandbox, task_label="dog.0", env={}, post=lambda e: None, cgroups="off")
sup.start()
first = sup.watchdog_pid
out = {"first": alive(first)}
now = int((cg / "pids.current").read_text())
(cg / "pids.max").write_text(str(now - 1))  # the dog's own place is not freed for another
os.kill(first, signal.SIGKILL)
out["failed"] = until(lambda: any("watchdog_failed" in line for line in lines))
out["pid while down"] = sup.watchdog_pid
sup.idle()  # still full: tried again, no second line
(cg / "pids.max").write_text("max")
sup.idle()
second = sup.watchdog_pid
out["second"] = second is not None and second != first and alive(second)
out["lines"] = [line for line in lines if "watchdog_" in line]
sup.close()
out["gone"] = until(lambda: not alive(second))
print(json.dumps(out), flush=True)
"""


def test_a_watchdog_that_could_not_be_started_again_is_started_once_it_can(tmp_path: Path) -> None:
    (tmp_path / "sb").mkdir()
    with pids_cgroup() as cg:
        done = subprocess.run([sys.executable, "-c", CHILD, str(cg), str(tmp_path / "sb"), str(REPO)],
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    lines = out.pop("lines")
    assert out == {"first": True, "failed": True, "pid while down": None, "second": True,
                   "gone": True}, (out, lines)
    assert [line.split()[0] for line in lines] == ["watchdog_exited", "watchdog_failed",
                                                   "watchdog_started"], lines
    assert "after 2 failed starts" in lines[-1], lines
    assert 'error="BlockingIOError: [Errno 11] Resource temporarily unavailable" ' in lines[1], lines


# A Python whose posix_spawn cannot start a session (as test_spawn_direct.py's: it raises
# NotImplementedError for `setsid=True`), so the watchdog is Popen's, in a full pids cgroup:
# what each start raised and the descriptors it left open, as a JSON line.
NO_SETSID_FULL_CHILD = r"""
import json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.support.nosetsid import posix_spawn_without_setsid
posix_spawn_without_setsid()
from executor.procs.watchdog import start_watchdog
cg = Path(sys.argv[1])
(cg / "cgroup.procs").write_text(str(os.getpid()))
before = sorted(os.listdir("/proc/self/fd"))
(cg / "pids.max").write_text("1")
out = {"started": [], "errors": []}
try:
    for _ in range(3):
        try:
            out["started"].append(start_watchdog("m").pid)
        except OSError as e:
            out["errors"].append(e.errno)
finally:
    (cg / "pids.max").write_text("max")
out["left open"] = len(os.listdir("/proc/self/fd")) - len(before)
print(json.dumps(out), flush=True)
"""


def test_a_popen_watchdog_that_cannot_fork_leaves_no_descriptor_open() -> None:
    """Its pipes were closed only when posix_spawn itself failed: one of Popen's errors (it
    is the fallback, in the NotImplementedError handler) left 3 descriptors open at every
    try, and the keeper tries again at every idle step of the task."""
    with pids_cgroup() as cg:
        done = subprocess.run([sys.executable, "-c", NO_SETSID_FULL_CHILD, str(cg), str(REPO)],
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {"started": [], "errors": [errno.EAGAIN] * 3,
                                       "left open": 0}, done.stdout
